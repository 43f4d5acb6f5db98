/**
 * The `nbd` node's options (qapi BlockdevOptionsNbd: `server.type=unix,server.path=…` or
 * `server.type=inet,server.host=…,server.port=…`, `export`, `reconnect-delay`) to a client
 * (nbd-client.ts). Kept apart so that opening a node tree loads the client only for nbd nodes.
 */
import { Qcow2Error } from '../errors.ts';
import type { BlockDevice } from './device.ts';
import { NbdDevice, type NbdServer } from './nbd-client.ts';

export function openNbd(o: ReadonlyMap<string, string>, readOnly: boolean): BlockDevice {
  const type = o.get('server.type');
  let server: NbdServer;
  if (type === 'unix') {
    server = { type: 'unix', path: o.get('server.path') ?? '' };
  } else if (type === 'inet') {
    server = { type: 'inet', host: o.get('server.host') ?? '', port: Number(o.get('server.port') ?? 10809) };
  } else {
    throw new Qcow2Error('INVALID_OPTION', "Parameter 'server.type' is missing", { key: 'server.type' });
  }
  const delay = Number(o.get('reconnect-delay') ?? 0);
  if (!Number.isInteger(delay) || delay < 0)
    throw new Qcow2Error('INVALID_OPTION', "Parameter 'reconnect-delay' expects uint32_t", {
      key: 'reconnect-delay',
    });
  return new NbdDevice(server, o.get('export') ?? '', delay, readOnly);
}
