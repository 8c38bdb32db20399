import { Marked } from "marked";
import type { OutgoingMessage } from "../agents/ports.ts";

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}

/** Link targets a model may produce; anything else (javascript:, data:, …) becomes plain text. */
const SAFE_LINK = /^(https?:|mailto:|matrix:|mxc:\/\/)/i;

/**
 * Markdown as models write it, rendered to the HTML subset Matrix clients
 * show. A model can be talked into emitting anything, so: raw HTML is
 * escaped, links keep only safe schemes, and images are never embedded. An
 * image a client fetches by itself is the classic way for injected
 * instructions to leak conversation data in its URL; it becomes a plain link.
 */
const markdown = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text }) => escapeHtml(text),
    link({ href, tokens }) {
      const label = this.parser.parseInline(tokens);
      return SAFE_LINK.test(href) ? `<a href="${escapeHtml(href)}">${label}</a>` : label;
    },
    image: ({ href, text }) =>
      SAFE_LINK.test(href)
        ? `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`
        : escapeHtml(text),
  },
});

/**
 * Longest structural line prefix (indentation, quote and list markers) and
 * longest run of inline markers that are rendered as markdown. Beyond them a
 * text is hostile, not formatted: marked's parsers slow down steeply on deep
 * nesting and long marker runs (seconds for a few tens of KB, and memory for
 * thousands of list levels), which would stall the room's queue.
 */
const MAX_LINE_PREFIX_CHARS = 256;
const MAX_MARKER_RUN = 128;
const LINE_PREFIX = /^[\t >*+\-\d.)]*/gmu;
const MARKER_RUN = new RegExp(`[*_\`~]{${String(MAX_MARKER_RUN + 1)},}`, "u");

function looksHostile(text: string): boolean {
  if (MARKER_RUN.test(text)) return true;
  for (const [prefix] of text.matchAll(LINE_PREFIX))
    if (prefix.length > MAX_LINE_PREFIX_CHARS) return true;
  return false;
}

/**
 * The answer as HTML. Markdown nested thousands of levels deep or full of
 * marker runs (a model can be made to write it) overflows or stalls marked's
 * recursive parser: such a text is sent as escaped plain text, with its line
 * breaks, rather than failing or stalling the turn.
 */
export function markdownToHtml(text: string): string {
  const plain = (): string => escapeHtml(text.trim()).replace(/\n/g, "<br />\n");
  if (looksHostile(text)) return plain();
  try {
    return markdown.parse(text, { async: false }).trim();
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return plain();
  }
}

type Content = Record<string, unknown>;

function baseContent(message: OutgoingMessage): Content {
  const content: Content = { msgtype: message.msgtype, body: message.body };
  if (message.html !== undefined) {
    content.format = "org.matrix.custom.html";
    content.formatted_body = message.html;
  }
  // An explicit, possibly empty, m.mentions stops clients from pinging
  // everyone whose name happens to appear in an answer.
  content["m.mentions"] =
    message.mentions === undefined || message.mentions.length === 0
      ? {}
      : { user_ids: [...message.mentions] };
  return content;
}

/** Event content for a new message: thread relation or reply, per the Matrix spec. */
export function messageContent(message: OutgoingMessage): Content {
  const content = baseContent(message);
  if (message.threadRootId) {
    content["m.relates_to"] = {
      rel_type: "m.thread",
      event_id: message.threadRootId,
      is_falling_back: true,
      "m.in_reply_to": { event_id: message.replyTo ?? message.threadRootId },
    };
  } else if (message.replyTo) {
    content["m.relates_to"] = { "m.in_reply_to": { event_id: message.replyTo } };
  }
  return content;
}

/** Event content replacing `original` (m.replace); the fallback body is prefixed with "* ". */
export function editContent(original: string, message: OutgoingMessage): Content {
  const replacement = baseContent(message);
  const content: Content = {
    msgtype: message.msgtype,
    body: `* ${message.body}`,
    "m.new_content": replacement,
    "m.relates_to": { rel_type: "m.replace", event_id: original },
  };
  if (message.html !== undefined) {
    content.format = "org.matrix.custom.html";
    content.formatted_body = `* ${message.html}`;
  }
  // Mentions in an edit notify nobody again.
  content["m.mentions"] = {};
  return content;
}
