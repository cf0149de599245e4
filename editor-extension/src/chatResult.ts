/**
 * Prose answers of chat code actions (Explain, Ask, Write tests): cube-lsp sends them as
 * `cube/chatResult` to a client that declares `experimental.cubeChatResult`, which this extension does,
 * and the extension shows them as a rendered markdown preview beside the code. Pure parts here.
 */

export const CHAT_RESULT_NOTIFICATION = "cube/chatResult";

/** The params of `cube/chatResult` (cube_lsp/chat/command.py). */
export interface ChatResult {
  chatId: string;
  action: string;
  uri: string;
  title: string;
  markdown: string;
}

/** Whether `value` is a well-formed chat result (a malformed one is ignored, never shown half). */
export function isChatResult(value: unknown): value is ChatResult {
  const v = value as Partial<ChatResult> | null;
  return (
    typeof v?.chatId === "string" &&
    typeof v.action === "string" &&
    typeof v.uri === "string" &&
    typeof v.title === "string" &&
    typeof v.markdown === "string"
  );
}

/** The markdown document shown for a result: its title, the file it is about, then the answer. */
export function chatResultMarkdown(result: ChatResult): string {
  const file = decodeURIComponent(result.uri.replace(/^file:\/\//, "")).split("/").pop() ?? result.uri;
  return `# ${result.title}\n\n_${file}_\n\n${result.markdown.trim()}\n`;
}
