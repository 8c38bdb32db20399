import type { Fact, HistoryMessage, Platform } from "../memory/types.ts";
import type { ChatMessage } from "../models/types.ts";
import type { MatrixUserId } from "../shared/ids.ts";
import type { Agent } from "./types.ts";

/**
 * Facts are often in the words of the person who said them ("my favourite
 * colour is green"); the label tells the model whose words they are.
 */
const SUBJECT_LABEL = {
  person: "[about the person you are talking to]",
  room: "[about this room]",
  tenant: "[about the team]",
} as const;

export interface PromptInput {
  readonly agent: Agent;
  readonly agentUserId: MatrixUserId;
  readonly isDirect: boolean;
  /** Earlier messages of the room or thread, oldest first, without the current one. */
  readonly history: readonly HistoryMessage[];
  /** Retrieved facts, only about this person, this room or the team. */
  readonly facts: readonly Fact[];
  readonly current: {
    readonly sender: MatrixUserId;
    readonly platform: Platform;
    readonly body: string;
  };
  readonly now: Date;
}

export interface Prompt {
  readonly system: string;
  readonly messages: ChatMessage[];
}

/**
 * The model's view of a turn: the persona and what the agent remembers in
 * the system prompt, the conversation as alternating user/assistant turns.
 * In group rooms each person's words carry their Matrix ID so the model can
 * tell people apart; the agent's own earlier answers are its assistant turns.
 */
export function buildPrompt(input: PromptInput): Prompt {
  const { agent } = input;
  const where = input.isDirect ? "a direct chat" : "a group chat room";
  const lines = [
    `You are ${agent.displayName} (${input.agentUserId}), an AI agent in ${where} on Matrix.`,
    `It is ${input.now.toISOString().slice(0, 16).replace("T", " ")} UTC. The person talking to you is ${input.current.sender}` +
      (input.current.platform === "matrix"
        ? "."
        : `, writing from ${input.current.platform} through a bridge.`),
    "Answer concisely in Markdown. Use the remember tool for durable facts people tell you about themselves, and the forget tool when they ask you to forget something.",
  ];
  if (agent.instructions.trim() !== "")
    lines.push("", "Your instructions:", agent.instructions.trim());
  if (input.facts.length > 0) {
    lines.push("", "What you remember (most relevant first):");
    for (const fact of input.facts)
      lines.push(`- ${SUBJECT_LABEL[fact.subject.kind]} ${fact.content}`);
  }

  const turns: { role: "user" | "assistant"; content: string }[] = [];
  const push = (role: "user" | "assistant", content: string): void => {
    const last = turns[turns.length - 1];
    if (last?.role === role) last.content += `\n${content}`;
    else turns.push({ role, content });
  };
  for (const message of input.history) {
    if (message.agentId === agent.id) push("assistant", message.body);
    else push("user", input.isDirect ? message.body : `${message.sender}: ${message.body}`);
  }
  push(
    "user",
    input.isDirect ? input.current.body : `${input.current.sender}: ${input.current.body}`,
  );
  // Conversations must open with the user (Anthropic requires it).
  while (turns[0]?.role === "assistant") turns.shift();
  return { system: lines.join("\n"), messages: turns };
}
