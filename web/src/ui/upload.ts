/**
 * Chunked uploads (docs/UPLOADS.md): `InitiateMediaUpload` (or `InitiateAvatarUpload`),
 * `UploadBegin`, every chunk with its SHA-256, then `UploadFinish` with the whole file's.
 * Chunks go one after another so progress is the bytes the server has taken; a chunk that fails
 * on the network is sent again (harmless, the server takes the same bytes twice) up to 3 times.
 */

import { sha256 } from "@noble/hashes/sha2.js";
import type { UploadMediaResponse } from "../gen/guildhall/v1/guildhall_pb";
import type { Server } from "../api";
import { toHex } from "../protocol/bytes";

const CHUNK = 512 * 1024;
const TRIES = 3;

export async function upload(
  server: Server,
  file: File,
  progress: (sent: number, total: number) => void,
  avatar = false,
  signal?: AbortSignal,
): Promise<UploadMediaResponse> {
  const { uploadToken } = avatar ? await server.api.initiateAvatarUpload({}) : await server.api.initiateMediaUpload({});
  const total = file.size;
  const mimeType = file.type || "application/octet-stream";
  const filename = file.name.replace(/[\\/\x00-\x1f\x7f]/g, "_").slice(0, 200) || "file";
  try {
    await server.api.uploadBegin({ uploadToken, filename, mimeType, totalSize: BigInt(total), chunkSize: CHUNK });
    const whole = sha256.create();
    for (let i = 0, at = 0; at < total; i++, at += CHUNK) {
      signal?.throwIfAborted();
      const data = new Uint8Array(await file.slice(at, Math.min(at + CHUNK, total)).arrayBuffer());
      whole.update(data);
      const digest = toHex(sha256(data));
      for (let t = 1; ; t++) {
        try {
          await server.api.uploadChunk({ uploadToken, chunkIndex: i, data, sha256: digest }, { signal });
          break;
        } catch (e) {
          if (t >= TRIES || signal?.aborted) throw e;
        }
      }
      progress(Math.min(at + CHUNK, total), total);
    }
    return await server.api.uploadFinish({ uploadToken, sha256: toHex(whole.digest()) });
  } catch (e) {
    await server.api.uploadAbort({ uploadToken }).catch(() => undefined);
    throw e;
  }
}
