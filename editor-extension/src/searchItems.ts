/**
 * The `cube/search` request (cube_lsp/search/lsp_convert.py) and how its answer becomes QuickPick
 * items. Pure: no `vscode` import, so it runs in plain node tests.
 */

export const SEARCH_REQUEST = "cube/search";
/** Wait this long after the last keystroke before asking (typing "refresh token" asks once or twice). */
export const SEARCH_DEBOUNCE_MS = 150;
export const SEARCH_LIMIT = 30;

/** The params of `cube/search`. */
export interface SearchParams {
  query: string;
  limit?: number;
  pathGlob?: string;
  languages?: string[];
}

/** One ranked location of the answer. */
export interface SearchItem {
  uri: string;
  path: string;
  startLine: number; // 1-based, inclusive
  endLine: number;
  symbol: string | null;
  score: number;
  snippet: string;
}

/** What a QuickPick row shows, and where it leads. */
export interface SearchPick {
  label: string;
  description: string;
  detail: string;
  uri: string;
  /** 0-based line to reveal. */
  line: number;
}

/** Build the request for what the user typed: `path:GLOB` words filter paths, the rest is the query. */
export function searchParams(typed: string, limit = SEARCH_LIMIT): SearchParams | undefined {
  let pathGlob: string | undefined;
  const words = typed.split(/\s+/).filter((word) => {
    const match = /^path:(\S+)$/.exec(word);
    if (match) {
      pathGlob = match[1];
      return false;
    }
    return word !== "";
  });
  const query = words.join(" ");
  if (!query) {
    return undefined;
  }
  return pathGlob ? { query, limit, pathGlob } : { query, limit };
}

/** The rows for an answer (malformed entries are dropped, never shown half). */
export function searchPicks(answer: unknown): SearchPick[] {
  const items = (answer as { items?: unknown } | null)?.items;
  if (!Array.isArray(items)) {
    return [];
  }
  const picks: SearchPick[] = [];
  for (const raw of items as Partial<SearchItem>[]) {
    if (typeof raw?.uri !== "string" || typeof raw.path !== "string" || typeof raw.startLine !== "number") {
      continue;
    }
    const where = `${raw.path}:${raw.startLine}`;
    const snippet = typeof raw.snippet === "string" ? raw.snippet : "";
    picks.push({
      label: raw.symbol ? `$(symbol-method) ${raw.symbol}` : `$(file-code) ${raw.path}`,
      description: where,
      detail: firstLines(snippet, 2),
      uri: raw.uri,
      line: Math.max(0, raw.startLine - 1),
    });
  }
  return picks;
}

function firstLines(text: string, count: number): string {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .slice(0, count)
    .join("  ");
}
