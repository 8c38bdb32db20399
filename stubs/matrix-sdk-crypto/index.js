"use strict";
// matrix-bot-sdk requires this package at import time but Switchboard never
// enables end-to-end encryption. Any real use fails loudly instead of silently.
const unavailable = () => {
  throw new Error("end-to-end encryption is not available in this build of Switchboard");
};
module.exports = new Proxy(
  {},
  {
    get(_target, property) {
      if (property === "__esModule") return false;
      if (property === "then") return undefined;
      return unavailable;
    },
  },
);
