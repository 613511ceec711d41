/**
 * A minimal typed event emitter. Unlike node's, an 'error' with no listener is
 * not thrown: the client reports errors, it never crashes its host program.
 */
export class Emitter<Events extends Record<string, unknown>> {
  private readonly listeners: { [K in keyof Events]?: ((value: Events[K]) => void)[] } = {};

  on<K extends keyof Events>(event: K, listener: (value: Events[K]) => void): this {
    (this.listeners[event] ??= []).push(listener);
    return this;
  }

  off<K extends keyof Events>(event: K, listener: (value: Events[K]) => void): this {
    const list = this.listeners[event];
    if (list !== undefined) {
      const i = list.indexOf(listener);
      if (i >= 0) list.splice(i, 1);
    }
    return this;
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const list = this.listeners[event];
    if (list === undefined) return;
    for (const listener of [...list]) listener(value);
  }
}
