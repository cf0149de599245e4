// A tiny HTTP router: routes by method and path pattern, with middleware.
import { parse } from "node:url";

const METHODS = ["GET", "POST", "PUT", "DELETE"];

/**
 * Compile a path pattern like "/users/:id" into a regular expression and its parameter names.
 */
export function compilePattern(pattern) {
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  return { regex: new RegExp(`^${source}$`), names };
}

export class Router {
  constructor() {
    this.routes = [];
    this.middleware = [];
  }

  use(fn) {
    this.middleware.push(fn);
    return this;
  }

  // Register a handler for one method and pattern.
  add(method, pattern, handler) {
    if (!METHODS.includes(method)) {
      throw new Error(`unsupported method ${method}`);
    }
    const { regex, names } = compilePattern(pattern);
    this.routes.push({ method, regex, names, handler });
    return this;
  }

  async handle(req, res) {
    const { pathname } = parse(req.url);
    for (const fn of this.middleware) {
      if ((await fn(req, res)) === false) return;
    }
    for (const route of this.routes) {
      const match = route.method === req.method && route.regex.exec(pathname);
      if (!match) continue;
      req.params = Object.fromEntries(route.names.map((name, i) => [name, match[i + 1]]));
      return route.handler(req, res);
    }
    res.statusCode = 404;
    res.end("not found");
  }
}

export const notFound = (req, res) => {
  res.statusCode = 404;
  res.end(`no route for ${req.method} ${req.url}`);
};

const logger = async (req) => {
  const started = Date.now();
  console.log(`${req.method} ${req.url} ${Date.now() - started}ms`);
  return true;
};

export default new Router().use(logger);
