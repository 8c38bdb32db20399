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
 * Shows a refusal on the form it answers: a 4xx AppError becomes `show`'s
 * page with the message and the error's status; anything else (5xx, an
 * unreachable upstream's 502) is rethrown for the error handler's page.
 */
export async function showRefusal(
  error: unknown,
  show: (message: string, status: number) => Promise<FastifyReply>,
): Promise<FastifyReply> {
  if (isAppError(error) && error.httpStatus < 500) return show(error.message, error.httpStatus);
  throw error;
}

/**
 * Runs a form's action; a refusal re-renders the form with the message and
 * what the person typed (never the password), with the error's status.
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
    return showRefusal(error, (message, status) =>
      reply.page(template, { ...data, error: message }, status),
    );
  }
}
