/** Encryption for qcow2 images: legacy AES (crypt_method 1) and LUKS (crypt_method 2). */
export * from './aes-legacy.ts';
export * from './afsplit.ts';
export * from './luks.ts';
export * from './sector-cipher.ts';
