/**
 * What `confab join` prints, as one shape for both output modes. `--json`
 * writes these objects as they are (doc/JSON.md); line mode formats them.
 */
export type ChatEvent =
  | { type: 'invite'; link: string; ts: number }
  | { type: 'joined'; nick: string; members: string[]; seq: number; ts: number }
  | { type: 'message'; nick: string; text: string; seq: number; ts: number }
  | { type: 'sent'; nick: string; text: string; seq: number; ts: number }
  | { type: 'join'; nick: string; ts: number }
  | { type: 'leave'; nick: string; reason: 'left' | 'disconnected'; ts: number }
  | { type: 'disconnect'; code: string | null; message: string | null; reconnecting: boolean; ts: number }
  | { type: 'reconnect'; members: string[]; ts: number }
  | { type: 'error'; code: string; message: string; ts: number };

/** One line of plain output, or null for events line mode does not show on stdout. */
export function formatLine(event: ChatEvent, inert: (s: string) => string): string | null {
  switch (event.type) {
    case 'invite':
      return `* invite: ${event.link}`;
    case 'joined':
      return event.members.length === 0
        ? `* joined as ${inert(event.nick)}; nobody else is here yet`
        : `* joined as ${inert(event.nick)}; here: ${event.members.map(inert).join(', ')}`;
    case 'message':
      return `<${inert(event.nick)}> ${inert(event.text)}`;
    case 'join':
      return `* ${inert(event.nick)} joined`;
    case 'leave':
      return event.reason === 'left' ? `* ${inert(event.nick)} left` : `* ${inert(event.nick)} left (connection lost)`;
    case 'sent':
    case 'disconnect':
    case 'reconnect':
    case 'error':
      return null;
  }
}

/** The stderr notice line mode prints for connection events and errors. */
export function formatNotice(event: ChatEvent): string | null {
  switch (event.type) {
    case 'disconnect':
      return `confab: connection lost${event.message !== null ? ` (${event.message})` : ''}${
        event.reconnecting ? '; reconnecting' : ''
      }`;
    case 'reconnect':
      return 'confab: reconnected';
    case 'error':
      return `confab: ${event.code}: ${event.message}`;
    default:
      return null;
  }
}
