import { adminCommands } from "./definitions/admin.ts";
import { agentCommands } from "./definitions/agents.ts";
import { bridgeCommands } from "./definitions/bridges.ts";
import { keyCommands } from "./definitions/keys.ts";
import { memoryCommands } from "./definitions/memory.ts";
import type { CommandServices } from "./define.ts";
import type { AnyCommand } from "./types.ts";

/** Every chat command, in the order help lists them. */
export function buildCommands(services: CommandServices): readonly AnyCommand[] {
  const commands: AnyCommand[] = [];
  commands.push(
    ...adminCommands(services, () => commands),
    ...agentCommands(services),
    ...keyCommands(services),
    ...memoryCommands(services),
    ...bridgeCommands(services),
  );
  return commands;
}
