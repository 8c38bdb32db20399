import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Field names whose values are never written to logs, wherever they appear
 * in a logged object. Secrets must not reach logs even by accident.
 */
const REDACTED_PATHS = [
  "password",
  "*.password",
  "token",
  "*.token",
  "apiKey",
  "*.apiKey",
  "api_key",
  "*.api_key",
  "accessToken",
  "*.accessToken",
  "as_token",
  "*.as_token",
  "hs_token",
  "*.hs_token",
  "asToken",
  "*.asToken",
  "hsToken",
  "*.hsToken",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  "secret",
  "*.secret",
  "masterKeys",
  "*.masterKeys",
];

export interface LoggerOptions {
  level: string;
  /** Human-readable output for a terminal; JSON lines otherwise. */
  pretty: boolean;
  /** Where JSON lines go instead of standard output (tests inspect logs this way). */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const settings = {
    level: options.level,
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    base: { service: "switchboard" },
    ...(options.pretty
      ? {
          transport: {
            target: "pino-pretty",
            options: { colorize: true, ignore: "pid,hostname,service" },
          },
        }
      : {}),
  };
  return options.destination === undefined ? pino(settings) : pino(settings, options.destination);
}
