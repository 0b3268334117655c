// The logger the toolkit's libraries log through. Libraries are silent unless the
// application passes one in (STYLE.md (b) 12); console satisfies this interface.

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

const ignore = (): void => {};

/** Discards everything: the default of every library that takes a logger. */
export const silentLogger: Logger = Object.freeze({ debug: ignore, info: ignore, warn: ignore });

/** Text of a logged message, cut to `max` characters so a 10 MB reply does not flood the log. */
export function logExcerpt(text: string, max = 2048): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}
