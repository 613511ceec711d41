/**
 * Promises still open, and a way to wait for all of them: each is dropped
 * once it settles, so a long stream of them holds only those in flight.
 */
export class Outcomes {
  private readonly open = new Set<Promise<void>>();

  /** Tracks `outcome`, which must not reject (its handlers report failures), until it settles. */
  add(outcome: Promise<void>): void {
    this.open.add(outcome);
    void outcome.then(() => this.open.delete(outcome));
  }

  /** Settles once every outcome added so far has, its handlers having run. */
  settled(): Promise<void> {
    return Promise.all(this.open).then(() => undefined);
  }
}
