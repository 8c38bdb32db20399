import { LogLevel, LogService } from "matrix-bot-sdk";
import type { Logger } from "../shared/logger.ts";

/**
 * Routes matrix-bot-sdk's own logging into our logger at WARN and above. It
 * logs request failures that we handle ourselves (e.g. M_USER_IN_USE while
 * registering an existing agent) at ERROR, so those stay at debug level here.
 */
export function routeSdkLogging(log: Logger): void {
  const sdkLog = log.child({ module: "matrix-bot-sdk" });
  const format = (module: string, messageOrObject: unknown[]): string =>
    `${module}: ${messageOrObject.map((part) => (typeof part === "string" ? part : ((part as Error | undefined)?.message ?? JSON.stringify(part)))).join(" ")}`;
  LogService.setLevel(LogLevel.WARN);
  LogService.setLogger({
    trace: (module, ...rest) => {
      sdkLog.trace(format(module, rest));
    },
    debug: (module, ...rest) => {
      sdkLog.debug(format(module, rest));
    },
    info: (module, ...rest) => {
      sdkLog.debug(format(module, rest));
    },
    warn: (module, ...rest) => {
      sdkLog.warn(format(module, rest));
    },
    error: (module, ...rest) => {
      sdkLog.debug(format(module, rest));
    },
  });
}
