/**
 * What POST /checkout and POST /purchase take and answer because of the
 * waiting room, for their schemas: the ticket (header or query parameter) and
 * the guard's 403s. Documented whether the room is on or off; off, the ticket
 * is ignored and the 403s never happen.
 */
import { Type } from 'typebox';

const WHY = 'the waiting-room ticket from POST /queue/join; required when `WAITING_ROOM=on`, ignored when off';

/** The `ticket` query parameter: no rule of its own, so the room off never refuses one. */
export const ticketQuery = {
  ticket: Type.Optional(Type.String({ description: `${WHY} (or the X-Queue-Ticket header)` })),
};
export const ticketHeaders = Type.Object({ 'x-queue-ticket': Type.Optional(Type.String({ description: WHY })) });

export const guardErrors = {
  NOT_ADMITTED: 'the waiting room is on and the ticket is not admitted yet (its position is in the message)',
  TICKET_INVALID:
    'the waiting room is on and the ticket is missing, forged, of another user or sale, or past `ADMISSION_TTL`',
} as const;
