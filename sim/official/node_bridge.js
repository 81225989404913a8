// What an operator would most likely build instead of the gateway: a bridge
// on the official Feishu Node SDK (@larksuiteoapi/node-sdk, the stack of
// OpenClaw's Feishu channel) with ioredis. `make bench`
// (sim/src/bin/gateway-bench.rs) measures the gateway side by side with it,
// and tests/e2e/official_sdk.rs checks that it stores the gateway's items.
// It does the same job as the gateway's hot paths and nothing more:
//
// - one `WSClient` per enabled channel of the Redis hash
//   `at:channel:config:feishu` (read once at start), all started at once
//   on Node's one event loop;
// - the bot's open_id from `/open-apis/bot/v3/info` at start, so that group
//   messages not @-ing the bot are skipped and its mention removed, as the
//   gateway does;
// - an `EventDispatcher` handler for `im.message.receive_v1` that builds the
//   inbound item and runs the gateway's own Lua script through ioredis; the
//   SDK acks by the handler's promise settling (a rejection makes it answer
//   500, so Feishu redelivers);
// - one loop that pops `at:channel:outbound:feishu` and replies through the
//   SDK's client (`im.v1.message.reply`, plain text, uuid from the id).
//
// Behaviour met on the way: the SDK has no pong timeout unless
// `wsConfig.pingTimeout` is set (a half-open connection is noticed only by
// TCP), and it refuses app ids that are not `cli_` + 16 hex digits.
//
// Usage: node node_bridge.js <base_url> <redis_url> <inbound_script.lua>
// Prints "READY" once every channel's client was started, then
// "CONNECTED <channel_id>" as each one connects.
'use strict';
const fs = require('fs');
const lark = require('@larksuiteoapi/node-sdk');
const Redis = require('ioredis');

const INBOUND = 'at:channel:inbound';
const OUTBOUND = 'at:channel:outbound:feishu';
const CONFIG = 'at:channel:config:feishu';
const DEDUP_TTL = 86400;

/** Spaces collapsed per line, as the gateway does. */
function tidy(text) {
  return text.split('\n').map((l) => l.split(' ').filter((w) => w).join(' ')).join('\n').trim();
}

/** The gateway's inbound item (docs/PROTOCOL.md §2) for one text message,
 * or null when the gateway would skip it (a group message not @-ing the bot). */
function inboundItem(channelId, cfg, botOpenId, data) {
  const msg = data.message;
  const sender = data.sender;
  const isBot = (m) => m.id && m.id.open_id === botOpenId;
  const all = msg.mentions || [];
  if (msg.chat_type !== 'p2p' && !all.some(isBot)) return null;
  let text = (JSON.parse(msg.content).text || '').split('@_all').join('@all');
  for (const m of [...all].sort((a, b) => b.key.length - a.key.length)) {
    text = text.split(m.key).join(isBot(m) ? '' : `@${m.name}`);
  }
  const id = sender.sender_id || {};
  const openId = id.open_id || null;
  return JSON.stringify({
    schema: 'at.channel.inbound', v: 1,
    id: `feishu:${cfg.app_id}:${msg.message_id}`,
    ts: Date.now(),
    channel_type: 'feishu', channel_id: channelId,
    agent_id: cfg.agent_id === undefined ? null : cfg.agent_id,
    project_id: cfg.project_id === undefined ? null : cfg.project_id,
    session_key: `feishu:${channelId}:${openId || ''}`,
    sender: {
      open_id: openId, union_id: id.union_id || null, user_id: id.user_id || null,
      tenant_key: sender.tenant_key, sender_type: sender.sender_type,
    },
    chat: { chat_id: msg.chat_id, chat_type: msg.chat_type },
    message: {
      message_id: msg.message_id, root_id: msg.root_id || null,
      parent_id: msg.parent_id || null, thread_id: msg.thread_id || null,
      create_time: msg.create_time ? Number(msg.create_time) : null,
      msg_type: msg.message_type,
    },
    question: tidy(text),
    mentions: all.filter((m) => !isBot(m))
      .map((m) => ({ name: m.name, open_id: m.id ? m.id.open_id : null })),
    event_id: data.event_id,
  });
}

async function main() {
  const [baseUrl, redisUrl, scriptPath] = process.argv.slice(2);
  const redis = new Redis(redisUrl);
  redis.defineCommand('store', { numberOfKeys: 2, lua: fs.readFileSync(scriptPath, 'utf8') });
  const rest = new Map(); // channel_id -> REST client
  const config = await redis.hgetall(CONFIG);
  const starts = Object.entries(config).map(async ([channelId, raw]) => {
    const cfg = JSON.parse(raw);
    if (cfg.enabled === false) return;
    const client = new lark.Client({
      appId: cfg.app_id, appSecret: cfg.app_secret, domain: baseUrl,
      loggerLevel: lark.LoggerLevel.error,
    });
    rest.set(channelId, client);
    // The bot's own open_id, to tell its @-mention from others (as the gateway does).
    const info = await client.request({ method: 'GET', url: '/open-apis/bot/v3/info' });
    const botOpenId = info.bot.open_id;
    const dispatcher = new lark.EventDispatcher({ loggerLevel: lark.LoggerLevel.error }).register({
      'im.message.receive_v1': async (data) => {
        const item = inboundItem(channelId, cfg, botOpenId, data);
        if (item === null) return;
        const key = `at:channel:dedup:feishu:${cfg.app_id}:${data.message.message_id}`;
        await redis.store(key, INBOUND, DEDUP_TTL, item);
      },
    });
    const ws = new lark.WSClient({
      appId: cfg.app_id, appSecret: cfg.app_secret, domain: baseUrl,
      loggerLevel: lark.LoggerLevel.error,
      onReady: () => console.log('CONNECTED', channelId),
    });
    await ws.start({ eventDispatcher: dispatcher });
  });
  await Promise.all(starts);
  console.log('READY');
  const pop = new Redis(redisUrl);
  for (;;) {
    const popped = await pop.brpop(OUTBOUND, 1);
    if (popped === null) continue;
    const item = JSON.parse(popped[1]);
    const client = rest.get(item.channel_id);
    if (!client) {
      console.error('unknown channel', item.channel_id);
      continue;
    }
    try {
      await client.im.v1.message.reply({
        path: { message_id: item.target.message_id },
        data: {
          content: JSON.stringify({ text: item.content.text }),
          msg_type: 'text', uuid: item.id.slice(0, 50),
        },
      });
    } catch (e) {
      console.error('reply failed', e.message);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
