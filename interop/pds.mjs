// A real PDS (the reference TypeScript implementation, @atproto/pds) with a PLC directory in
// memory, on loopback: the PDS on the port of the second argument, the PLC directory on that
// of the third (any free one when absent). It prints "UP <port>", then plays a script of
// account and record operations in two rounds when told to on stdin (see command below),
// writing what the PDS then holds (by its own XRPC answers) as JSON to the file named by its
// first argument. interop_test.go drives it; `npm ci --prefix interop` installs its packages.
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const require = createRequire(import.meta.url)
const plc = require('@did-plc/server')
const { PDS, envToCfg, envToSecrets } = require('@atproto/pds')
const { Secp256k1Keypair } = require('@atproto/crypto')

const [out, port, plcPort] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] ?? 0)]
if (!out || !port) throw new Error('usage: node pds.mjs <snapshot.json> <port> [<PLC port>]')

const plcServer = plc.PlcServer.create({ db: plc.Database.mock(), port: plcPort })
const plcHTTP = await plcServer.start()
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backfill-pds-'))
const rotation = await Secp256k1Keypair.create({ exportable: true })
const env = {
  port, hostname: 'localhost', devMode: true,
  dataDirectory: dir, blobstoreDiskLocation: path.join(dir, 'blobs'),
  didPlcUrl: `http://localhost:${plcHTTP.address().port}`,
  serviceHandleDomains: ['.test'], inviteRequired: false,
  jwtSecret: 'interop-jwt-secret', adminPassword: 'interop-admin',
  plcRotationKeyK256PrivateKeyHex: Buffer.from(await rotation.export()).toString('hex'),
  crawlers: [],
}
const pds = await PDS.create(envToCfg(env), envToSecrets(env))
await pds.start()

// Commands on stdin: "play" plays the first round, "more" the second; each is answered by
// "READY <port>" once the snapshot is written. The end of stdin stops the servers.
const commands = (await import('node:readline')).createInterface({ input: process.stdin })[Symbol.asyncIterator]()
async function command() {
  const { value, done } = await commands.next()
  return done ? null : value
}
async function stop() {
  await pds.destroy()
  await plcServer.destroy()
  fs.rmSync(dir, { recursive: true, force: true })
  process.exit(0)
}
console.log(`UP ${port}`)
if ((await command()) !== 'play') await stop()

const admin = 'Basic ' + Buffer.from('admin:interop-admin').toString('base64')
async function xrpc(nsid, { body, auth, params, raw, type } = {}) {
  const url = new URL(`http://localhost:${port}/xrpc/${nsid}`)
  for (const [k, v] of Object.entries(params ?? {})) url.searchParams.set(k, v)
  const headers = {}
  if (auth) headers.authorization = auth.startsWith('Basic ') ? auth : `Bearer ${auth}`
  let payload
  if (raw) { headers['content-type'] = type; payload = raw }
  else if (body) { headers['content-type'] = 'application/json'; payload = JSON.stringify(body) }
  const res = await fetch(url, { method: payload || !params ? 'POST' : 'GET', headers, body: payload })
  const text = await res.text()
  if (!res.ok) throw new Error(`${nsid}: ${res.status} ${text}`)
  return text ? JSON.parse(text) : {}
}
const get = (nsid, params, auth) => xrpc(nsid, { params, auth })

// Accounts.
const users = {}
for (const name of ['alice', 'bob', 'carol', 'dave', 'erin']) {
  const a = await xrpc('com.atproto.server.createAccount', { body: { email: `${name}@example.test`, handle: `${name}.test`, password: 'password' } })
  users[name] = { did: a.did, jwt: a.accessJwt }
}
const { alice, bob, carol, dave, erin } = users

let clock = Date.parse('2026-11-01T10:00:00.000Z')
const at = () => new Date((clock += 1000)).toISOString()
async function create(u, collection, record, rkey) {
  return xrpc('com.atproto.repo.createRecord', { auth: u.jwt, body: { repo: u.did, collection, rkey, record: { $type: collection, ...record } } })
}
async function put(u, collection, rkey, record) {
  return xrpc('com.atproto.repo.putRecord', { auth: u.jwt, body: { repo: u.did, collection, rkey, record: { $type: collection, ...record } } })
}
async function del(u, ref) {
  const [, collection, rkey] = ref.uri.slice('at://'.length).split('/')
  return xrpc('com.atproto.repo.deleteRecord', { auth: u.jwt, body: { repo: u.did, collection, rkey } })
}
const strong = (r) => ({ uri: r.uri, cid: r.cid })

// A 1x1 PNG, as a blob of each user who shows images.
const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000' +
  '1f15c4890000000d49444154789c6360f8cfc0f01f0005000201c3d8fa2a0000000049454e44ae426082', 'hex')
const blob = async (u) => (await xrpc('com.atproto.repo.uploadBlob', { auth: u.jwt, raw: png, type: 'image/png' })).blob

// Posts of every shape the AppView stores.
const hello = await create(alice, 'app.bsky.feed.post', { text: 'hello, world', createdAt: at(), langs: ['en'] })
const text = 'hi @bob.test, see https://example.com #atproto ✨'
const enc = new TextEncoder()
const span = (s) => ({ byteStart: enc.encode(text.slice(0, text.indexOf(s))).length, byteEnd: enc.encode(text.slice(0, text.indexOf(s) + s.length)).length })
const rich = await create(alice, 'app.bsky.feed.post', {
  text, createdAt: at(), tags: ['backfill', 'interop'],
  facets: [
    { index: span('@bob.test'), features: [{ $type: 'app.bsky.richtext.facet#mention', did: bob.did }] },
    { index: span('https://example.com'), features: [{ $type: 'app.bsky.richtext.facet#link', uri: 'https://example.com' }] },
    { index: span('#atproto'), features: [{ $type: 'app.bsky.richtext.facet#tag', tag: 'atproto' }] },
  ],
})
const reply = await create(bob, 'app.bsky.feed.post', { text: 'hello alice', createdAt: at(), reply: { root: strong(hello), parent: strong(hello) } })
const nested = await create(carol, 'app.bsky.feed.post', { text: 'hello both', createdAt: at(), reply: { root: strong(hello), parent: strong(reply) } })
const quote = await create(carol, 'app.bsky.feed.post', { text: 'look', createdAt: at(), embed: { $type: 'app.bsky.embed.record', record: strong(rich) } })
const images = await create(bob, 'app.bsky.feed.post', {
  text: 'a picture', createdAt: at(),
  embed: { $type: 'app.bsky.embed.images', images: [{ image: await blob(bob), alt: 'one pixel', aspectRatio: { width: 1, height: 1 } }] },
})
const linkPost = await create(dave, 'app.bsky.feed.post', {
  text: 'a link', createdAt: at(),
  embed: { $type: 'app.bsky.embed.external', external: { uri: 'https://example.com/a', title: 'A', description: 'the letter A', thumb: await blob(dave) } },
})
await create(carol, 'app.bsky.feed.post', {
  text: 'quote with media', createdAt: at(),
  embed: { $type: 'app.bsky.embed.recordWithMedia', record: { $type: 'app.bsky.embed.record', record: strong(images) },
    media: { $type: 'app.bsky.embed.images', images: [{ image: await blob(carol), alt: '' }] } },
})
await create(erin, 'app.bsky.feed.post', { text: 'gone with the account', createdAt: at() })
const doomed = await create(bob, 'app.bsky.feed.post', { text: 'deleted in a batch', createdAt: at() })
const gone = await create(dave, 'app.bsky.feed.post', { text: 'deleted soon', createdAt: at() })
await del(dave, gone)
const edited = await create(erin, 'app.bsky.feed.post', { text: 'first version', createdAt: at() })
await put(erin, 'app.bsky.feed.post', edited.uri.split('/').pop(), { text: 'second version', createdAt: at() })
await create(dave, 'app.bsky.feed.post', { text: 'an odd time', createdAt: '2026-11-01T10:00:00+02:00' })

// Likes and reposts, with a delete and a like again of the same post.
await create(bob, 'app.bsky.feed.like', { subject: strong(hello), createdAt: at() })
await create(carol, 'app.bsky.feed.like', { subject: strong(hello), createdAt: at() })
const unliked = await create(dave, 'app.bsky.feed.like', { subject: strong(rich), createdAt: at() })
await del(dave, unliked)
await create(dave, 'app.bsky.feed.like', { subject: strong(rich), createdAt: at() })
await create(alice, 'app.bsky.feed.like', { subject: strong(quote), createdAt: at() })
await create(dave, 'app.bsky.feed.repost', { subject: strong(hello), createdAt: at() })
const unreposted = await create(bob, 'app.bsky.feed.repost', { subject: strong(rich), createdAt: at() })
await del(bob, unreposted)

// Follows and blocks, one of a DID on no server here.
await create(alice, 'app.bsky.graph.follow', { subject: bob.did, createdAt: at() })
await create(bob, 'app.bsky.graph.follow', { subject: alice.did, createdAt: at() })
const unfollowed = await create(carol, 'app.bsky.graph.follow', { subject: alice.did, createdAt: at() })
await del(carol, unfollowed)
await create(carol, 'app.bsky.graph.follow', { subject: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz', createdAt: at() })
const unblocked = await create(dave, 'app.bsky.graph.block', { subject: erin.did, createdAt: at() })
await del(dave, unblocked)
await create(erin, 'app.bsky.graph.block', { subject: dave.did, createdAt: at() })
await create(alice, 'app.bsky.graph.block', { subject: dave.did, createdAt: at() })

// Several ops in one commit.
await xrpc('com.atproto.repo.applyWrites', { auth: bob.jwt, body: { repo: bob.did, writes: [
  { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', text: 'batch one', createdAt: at() } },
  { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.like', value: { $type: 'app.bsky.feed.like', subject: strong(nested), createdAt: at() } },
  { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.graph.follow', value: { $type: 'app.bsky.graph.follow', subject: carol.did, createdAt: at() } },
  { $type: 'com.atproto.repo.applyWrites#delete', collection: 'app.bsky.feed.post', rkey: doomed.uri.split('/').pop() },
] } })

// Profiles: set, updated, deleted; one with images and a pinned post.
await put(alice, 'app.bsky.actor.profile', 'self', { displayName: 'Alice', description: 'first\nsecond', avatar: await blob(alice), banner: await blob(alice), pinnedPost: strong(rich), createdAt: at() })
await put(bob, 'app.bsky.actor.profile', 'self', { displayName: 'Bob' })
await put(bob, 'app.bsky.actor.profile', 'self', { displayName: 'Robert', description: 'renamed' })
await put(carol, 'app.bsky.actor.profile', 'self', { displayName: 'Carol' })
await xrpc('com.atproto.repo.deleteRecord', { auth: carol.jwt, body: { repo: carol.did, collection: 'app.bsky.actor.profile', rkey: 'self' } })

// A handle changed (#identity).
await xrpc('com.atproto.identity.updateHandle', { auth: erin.jwt, body: { handle: 'erin-two.test' } })

// What the PDS holds, by its own answers: every record of every collection, the handle and
// the status of each account. The records of a deactivated or taken-down account are not
// listed: they are those of the last snapshot that could list them (such accounts write
// nothing here). A deleted account's repo is gone, and so are its events from the PDS's
// sequencer (all but the #account that says so): a backfill from the PDS no longer sees its
// records or its handle, one from a relay that saw them live does.
const collections = ['app.bsky.feed.post', 'app.bsky.feed.like', 'app.bsky.feed.repost', 'app.bsky.graph.follow', 'app.bsky.graph.block', 'app.bsky.actor.profile']
const listed = {}
async function snapshot() {
  const accounts = []
  for (const [name, u] of Object.entries(users)) {
    let status
    try {
      status = await get('com.atproto.sync.getRepoStatus', { did: u.did })
    } catch (err) {
      if (!String(err).includes('RepoNotFound')) throw err
      // history: what a relay that saw the account's events live still replays.
      accounts.push({ name, did: u.did, handle: null, active: false, status: 'deleted', records: [], history: listed[name] })
      continue
    }
    if (status.active) {
      const desc = await get('com.atproto.repo.describeRepo', { repo: u.did })
      const records = []
      for (const collection of collections) {
        let cursor
        do {
          const page = await get('com.atproto.repo.listRecords', { repo: u.did, collection, limit: '100', ...(cursor ? { cursor } : {}) })
          records.push(...page.records)
          cursor = page.cursor
        } while (cursor)
      }
      listed[name] = { handle: desc.handle, records }
    }
    accounts.push({ name, did: u.did, ...listed[name], active: status.active, status: status.status ?? 'active', rev: status.rev })
  }
  fs.writeFileSync(out, JSON.stringify({ accounts }, null, 1))
  await passedOn()
}

// The PDS passes events on to live subscriptions from a poller of its sequencer's table, which
// waits up to a second between polls when it finds nothing: until it has passed on the last
// event written, a subscription opened now may get an earlier event as its first live one,
// which a fetch takes for the head (and stops there). Wait for the poller before answering.
async function passedOn() {
  const seq = pds.ctx.sequencer
  for (const deadline = Date.now() + 10000; ;) {
    if ((await seq.requestSeqRange({ earliestSeq: seq.lastSeen, limit: 1 })).length === 0) return
    if (Date.now() > deadline) throw new Error(`the sequencer's poller is stuck at seq ${seq.lastSeen}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
await snapshot()

// Account statuses (#account): they change no record.
await xrpc('com.atproto.server.deactivateAccount', { auth: dave.jwt, body: {} })
await xrpc('com.atproto.server.activateAccount', { auth: dave.jwt })
await xrpc('com.atproto.server.deactivateAccount', { auth: carol.jwt, body: {} })
await xrpc('com.atproto.admin.updateSubjectStatus', { auth: admin, body: { subject: { $type: 'com.atproto.admin.defs#repoRef', did: bob.did }, takedown: { applied: true, ref: 'interop' } } })
await xrpc('com.atproto.admin.deleteAccount', { auth: admin, body: { did: erin.did } })
// Each round ends every account with an event a relay's state shows (a commit, or a status that
// differs from the one before): interop_test.go waits for a relay to reach those.
await create(dave, 'app.bsky.feed.post', { text: 'back again', createdAt: at() })
await snapshot()
console.log(`READY ${port}`)

// The second round, for a backfill that goes on from the first.
async function more() {
  await xrpc('com.atproto.identity.updateHandle', { auth: alice.jwt, body: { handle: 'alice-b.test' } })
  const news = await create(alice, 'app.bsky.feed.post', { text: 'news', createdAt: at() })
  await create(dave, 'app.bsky.feed.like', { subject: strong(news), createdAt: at() })
  await create(dave, 'app.bsky.graph.follow', { subject: alice.did, createdAt: at() })
  await del(dave, linkPost) // created in the first round
  await del(alice, hello)
  await put(alice, 'app.bsky.actor.profile', 'self', { displayName: 'Alice B.', pinnedPost: strong(news) })
  await xrpc('com.atproto.server.activateAccount', { auth: carol.jwt })
  await create(carol, 'app.bsky.feed.repost', { subject: strong(news), createdAt: at() })
  await snapshot()
}
// "live": alice posts (and deletes every third post) every 20 ms until "calm", so that a
// backfill can start while the stream is live. "calm" answers READY once the snapshot is
// written.
let calm = null
async function live() {
  let stopped = false
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const post = await create(alice, 'app.bsky.feed.post', { text: `live ${i}`, createdAt: at() })
      if (i % 3 === 2) await del(alice, post)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  return async () => {
    stopped = true
    await loop
  }
}
for (;;) {
  const c = await command()
  if (c === null) await stop()
  if (c === 'more') {
    await more()
    console.log(`READY ${port}`)
  }
  if (c === 'live') {
    calm = await live()
    console.log(`LIVE ${port}`)
  }
  if (c === 'calm' && calm) {
    await calm()
    await snapshot()
    console.log(`READY ${port}`)
  }
}
