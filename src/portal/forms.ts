import type { FastifyReply } from "fastify";
import { z } from "zod";
import { isAppError } from "../shared/errors.ts";

/**
 * A posted form as fields of bounded text. Pages parse forms loosely and
 * let the service's schema judge the values, so a page and the API refuse
 * the same input with the same message.
 */
export const FormBody = z.record(z.string().max(64), z.string().max(16_384));

/**
 * Runs a form's action; a 4xx AppError re-renders the form with the message
 * and what the person typed (never the password), with the error's status.
 */
export async function formAction(
  reply: FastifyReply,
  template: string,
  data: Record<string, unknown>,
  action: () => Promise<FastifyReply>,
): Promise<FastifyReply> {
  try {
    return await action();
  } catch (error) {
    if (!isAppError(error) || error.httpStatus >= 500) throw error;
    return reply.page(template, { ...data, error: error.message }, error.httpStatus);
  }
}
