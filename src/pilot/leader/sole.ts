// Leadership without an election: a pilot on a directory store is the only writer of its
// directory (config-stores.md), so it is the mesh's single pilot and always its leader.
import type { Logger } from 'pino';
import { Leadership, type LeaderStatus } from './leadership.ts';

export class SoleLeader extends Leadership {
  private readonly since = new Date().toISOString();
  private closed = false;

  constructor(identity: string, logger: Logger) {
    super(identity, logger);
    this.setLeader(true, { election: 'sole' });
  }

  status(): LeaderStatus {
    return {
      leader: this.isLeader(),
      identity: this.identity,
      leaderIdentity: this.closed ? null : this.identity,
      term: null,
      since: this.closed ? null : this.since,
      election: 'sole',
      lease: null,
      tasks: this.taskList(),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.setLeader(false, { reason: 'closing' });
    await this.stopTasks();
  }
}
