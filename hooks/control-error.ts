// The failure of a control request, in its own file so the hook can report a missing socket
// without loading node:net (and node:stream under it: ~5 ms of start-up).
export class ControlError extends Error {
  /** unreachable: nobody listens (daemon down); timeout; protocol: a reply we cannot read. */
  readonly kind: 'unreachable' | 'timeout' | 'protocol';
  constructor(kind: ControlError['kind'], message: string) {
    super(message);
    this.name = 'ControlError';
    this.kind = kind;
  }
}
