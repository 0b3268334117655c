// The client's lifecycle (qemu.qmp's Runstate). Calls check it and throw QmpStateError.
//   idle ──connect()──▶ connecting ──greeting + qmp_capabilities──▶ running
//   running ──disconnect()──▶ disconnecting ──▶ idle;  any failure/peer EOF ──▶ idle
export type Runstate = 'idle' | 'connecting' | 'running' | 'disconnecting';
