// Tests of src/core/escrow.ts: the recovery key's text against RFC 7748's
// X25519 vector; a box opens with its private key for its safe only, and
// fails closed on any changed byte; a second implementation written from
// docs/format.md §2.8 alone (node:crypto's X25519, HKDF and AES-GCM) opens a
// box; key files round-trip, sealed or not, and refuse a wrong passphrase.

import assert from 'node:assert/strict';
import { createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { AuthenticationError } from '../../src/core/crypto.js';
import {
  decodeRecoveryKeyFile,
  encodeRecoveryKeyFile,
  EscrowFormatError,
  newRecoveryKeyPair,
  openRecoveryBox,
  parsePublicKey,
  publicKeyOf,
  sealedFor,
  sealForRecovery,
  WrongPassphraseError,
  WrongRecoveryKeyError,
} from '../../src/core/escrow.js';

const CHEAP = { N: 1024, r: 8, p: 1 };

describe('recovery keys and escrow boxes', () => {
  it('names a private key by its X25519 public key (RFC 7748 section 6.1)', () => {
    const alice = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
    const alicePublic = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex');
    assert.equal(publicKeyOf(alice), `hfrk_${alicePublic.toString('base64url')}`);
    assert.ok(parsePublicKey(publicKeyOf(alice)).equals(alicePublic));
  });

  it('opens a box with its private key, for its safe only', () => {
    const k = newRecoveryKeyPair();
    const box = sealForRecovery(k.publicKey, Buffer.from('the password'), 'web1-files');
    assert.equal(sealedFor(box), k.publicKey);
    assert.equal(openRecoveryBox(k.privateKey, box, 'web1-files').toString(), 'the password');
    assert.throws(() => openRecoveryBox(k.privateKey, box, 'db1-files'), AuthenticationError);
    const other = newRecoveryKeyPair();
    assert.throws(() => openRecoveryBox(other.privateKey, box, 'web1-files'), (e: unknown) => e instanceof WrongRecoveryKeyError && e.sealedFor === k.publicKey);
    // Two boxes of one password differ (a fresh ephemeral key each).
    assert.ok(!box.equals(sealForRecovery(k.publicKey, Buffer.from('the password'), 'web1-files')));
  });

  it('fails closed on any changed byte', () => {
    const k = newRecoveryKeyPair();
    const box = sealForRecovery(k.publicKey, Buffer.from('0123456789abcdef'), 's');
    for (let i = 0; i < box.length; i++) {
      const bad = Buffer.from(box);
      bad[i]! ^= 0x01;
      assert.throws(() => openRecoveryBox(k.privateKey, bad, 's'), (e: unknown) => e instanceof AuthenticationError || e instanceof WrongRecoveryKeyError || e instanceof EscrowFormatError, `byte ${i}`);
    }
    assert.throws(() => sealedFor(box.subarray(0, 60)), EscrowFormatError);
    assert.throws(() => parsePublicKey('hfrk_short'), EscrowFormatError);
    assert.throws(() => sealForRecovery(k.publicKey, Buffer.alloc(0), 's'), EscrowFormatError);
  });

  it('opens with a second implementation written from docs/format.md §2.8', () => {
    const k = newRecoveryKeyPair();
    const box = sealForRecovery(k.publicKey, Buffer.from('a password made on the machine'), 'acme-web1');
    // The construction as the spec states it, from node:crypto's primitives only.
    assert.equal(box.subarray(0, 4).toString('latin1'), 'HFE1');
    const R = box.subarray(4, 36);
    const E = box.subarray(36, 68);
    assert.equal(`hfrk_${R.toString('base64url')}`, k.publicKey);
    const priv = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), k.privateKey]), format: 'der', type: 'pkcs8' });
    const pub = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), E]), format: 'der', type: 'spki' });
    const Z = diffieHellman({ privateKey: priv, publicKey: pub });
    const okm = Buffer.from(hkdfSync('sha256', Z, Buffer.concat([E, R]), Buffer.from('holdfast escrow 1'), 44));
    const d = createDecipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32, 44));
    d.setAAD(Buffer.concat([box.subarray(0, 68), Buffer.from('acme-web1', 'utf8')]));
    d.setAuthTag(box.subarray(box.length - 16));
    const plain = Buffer.concat([d.update(box.subarray(68, box.length - 16)), d.final()]);
    assert.equal(plain.toString(), 'a password made on the machine');
  });

  it('key files round-trip, plain or sealed with a passphrase, and refuse a wrong passphrase', async () => {
    const k = newRecoveryKeyPair();
    const plain = decodeRecoveryKeyFile(await encodeRecoveryKeyFile(k), 'plain.key');
    assert.equal(plain.sealed, false);
    assert.ok((await plain.privateKey()).equals(k.privateKey));

    const text = await encodeRecoveryKeyFile(k, Buffer.from('a passphrase'), CHEAP);
    assert.ok(!text.includes(k.privateKey.toString('base64url')));
    const sealed = decodeRecoveryKeyFile(text, 'sealed.key');
    assert.equal(sealed.sealed, true);
    assert.equal(sealed.publicKey, k.publicKey);
    assert.ok((await sealed.privateKey(Buffer.from('a passphrase'))).equals(k.privateKey));
    await assert.rejects(sealed.privateKey(Buffer.from('another passphrase')), WrongPassphraseError);

    // A file whose public key is not its private key's is damage, not a key.
    const swapped = JSON.parse(await encodeRecoveryKeyFile(k));
    swapped.public_key = newRecoveryKeyPair().publicKey;
    await assert.rejects(decodeRecoveryKeyFile(JSON.stringify(swapped), 'swapped.key').privateKey(), /does not match its public key/);
    assert.throws(() => decodeRecoveryKeyFile('{"type":"something else"}', 'other.json'), EscrowFormatError);
    assert.throws(() => decodeRecoveryKeyFile('not json', 'text.txt'), EscrowFormatError);
  });
});
