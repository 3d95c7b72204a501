// The sextant command: one CLI for the control plane, the proxy and istioctl-style tools.
// Each subcommand lives in its own file and registers itself on the program. Only the
// invoked command's module is loaded, so `sextant proxy` carries no control-plane code.
import { Command } from 'commander';
import { runProgram } from './flags.ts';

type Register = (program: Command) => void;

/** Command name → the module that registers it. */
const COMMANDS: Record<string, () => Promise<Register>> = {
  pilot: async () => (await import('./pilot.ts')).registerPilot,
  proxy: async () => (await import('./proxy.ts')).registerProxy,
  gateway: async () => (await import('./gateway.ts')).registerGateway,
  hub: async () => (await import('./hub.ts')).registerHub,
  validate: async () => (await import('./validate.ts')).registerValidate,
  apply: async () => (await import('./config.ts')).registerConfigCommands,
  get: async () => (await import('./config.ts')).registerConfigCommands,
  delete: async () => (await import('./config.ts')).registerConfigCommands,
  'proxy-status': async () => (await import('./proxy-status.ts')).registerProxyStatus,
  'proxy-config': async () => (await import('./proxy-config.ts')).registerProxyConfig,
  demo: async () => (await import('./demo.ts')).registerDemo,
  iptables: async () => (await import('./iptables.ts')).registerIptables,
  inject: async () => (await import('./inject.ts')).registerInject,
  injector: async () => (await import('./injector.ts')).registerInjector,
  wait: async () => (await import('./wait.ts')).registerWait,
  register: async () => (await import('./register.ts')).registerRegister,
  alerts: async () => (await import('./alerts.ts')).registerAlerts,
  logs: async () => (await import('./logs.ts')).registerLogs,
  peers: async () => (await import('./peers.ts')).registerPeers,
};

const program = new Command('sextant')
  .description('Sextant service mesh: an xDS control plane for Istio config, and its sidecar proxy')
  .version('0.1.0');

const invoked = process.argv[2];
const loaders = invoked !== undefined && invoked in COMMANDS ? [COMMANDS[invoked]!] : Object.values(COMMANDS);
const registered = new Set<Register>();
for (const load of loaders) {
  const register = await load();
  if (registered.has(register)) continue;
  registered.add(register);
  register(program);
}

await runProgram(program, process.argv);
