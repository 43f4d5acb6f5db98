/**
 * The names of qcow2's creation options (block/qcow2.c, qcow2_create_opts), encryption's included:
 * one list for `create`, `measure` and `amend`, each of which accepts or refuses by it.
 */

/** The `encrypt.*` options (and the legacy `encryption` switch), in QEMU's "Formatting" order. */
export const ENCRYPT_KEYS = [
  'encryption',
  'encrypt.format',
  'encrypt.key-secret',
  'encrypt.cipher-alg',
  'encrypt.cipher-mode',
  'encrypt.ivgen-alg',
  'encrypt.ivgen-hash-alg',
  'encrypt.hash-alg',
  'encrypt.iter-time',
] as const;

export const QCOW2_CREATE_KEYS: readonly string[] = [
  'size',
  'compat',
  'backing_file',
  'backing_fmt',
  'data_file',
  'data_file_raw',
  ...ENCRYPT_KEYS,
  'cluster_size',
  'extended_l2',
  'preallocation',
  'lazy_refcounts',
  'refcount_bits',
  'compression_type',
];
