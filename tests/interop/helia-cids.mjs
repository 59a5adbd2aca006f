// Prints the CID Helia's UnixFS importer gives each file, with the parameters of Kubo's
// `unixfs-v1-2025` profile: CIDv1, raw leaves, 1 MiB fixed chunks, balanced layout of at
// most 1024 links per node, one-chunk files reduced to their raw leaf.
//
// Usage: node tests/interop/helia-cids.mjs FILE...   -> one "FILE CID" line per file.
// Blocks go to a black-hole blockstore, so memory stays flat for multi-GiB files.

// Node 20 lacks Promise.withResolvers, which recent multiformats/it-* packages use.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

import { createReadStream } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

// Resolve the pinned packages from tools/node_modules (this file lives in tests/interop).
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const require = createRequire(join(root, 'tools', 'package.json'))
const load = async (spec) => import(pathToFileURL(require.resolve(spec)).href)

const { importer } = await load('ipfs-unixfs-importer')
const { fixedSize } = await load('ipfs-unixfs-importer/chunker')
const { balanced } = await load('ipfs-unixfs-importer/layout')
const { BlackHoleBlockstore } = await load('blockstore-core')

const options = {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 1048576 }),
  layout: balanced({ maxChildrenPerNode: 1024 }),
  wrapWithDirectory: false,
}

const blockstore = new BlackHoleBlockstore()
for (const file of process.argv.slice(2)) {
  let last
  for await (const entry of importer([{ content: createReadStream(file, { highWaterMark: 1 << 20 }) }], blockstore, options)) {
    last = entry
  }
  if (last === undefined) throw new Error(`no output for ${file}`)
  console.log(`${file} ${last.cid.toString()}`)
}
