/**
 * The error a server policy throws to refuse an upload (a backdated
 * snapshot, a quota): the repository protocol (src/server/http/repo-routes.ts)
 * answers it with its HTTP status and a JSON body holding its wire code and
 * message, and stores nothing.
 */

/** Thrown by an upload hook (`SafeAccess.beforeSave`, `SafeAccess.beforeCommit`) to refuse an upload. */
export class UploadRefusedError extends Error {
  /**
   * `status`: the HTTP status of the answer (403 for a policy, 413 for a
   * quota, …); `code`: the stable wire code (docs/format.md, "Wire protocol"),
   * such as `SNAPSHOT_BACKDATED` or `QUOTA_EXCEEDED`.
   */
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'UploadRefusedError';
  }
}
