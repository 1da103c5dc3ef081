/**
 * spread.js: a dependency-free browser client of a Spread node's websocket protocol (ES module).
 *
 *     import { connect } from "/static/spread/spread.js";
 *
 *     const client = connect("/ws/", { token, onStatus: (status) => show(status) });
 *     const unsubscribe = client.subscribe("sensors", (event) => render(event), {
 *       onReset: () => dropEverything(), // the node could not resume: a full catch-up follows
 *       onCursor: (iteration) => showIteration(iteration),
 *     });
 *     const report = await client.post("sensors/plant-3/temp", "21.5"); // resolves with the ack
 *     unsubscribe();
 *     client.close();
 *
 * One websocket per client. Its URL is `url` followed by the oldest subscription's path with
 * `?since=<its cursor>` (and `&token=`); the other subscriptions are sent as `subscribe` frames
 * once it is open. A client without subscriptions (posts only) connects to the root and
 * unsubscribes from it at once.
 *
 * The node's frames do not say which subscription they belong to, so an update goes to every
 * subscription covering its path, `synced` to the oldest subscription still catching up (the node
 * handles subscribes in order), and `heartbeat` to every caught-up one. Subscriptions of one client
 * should therefore not overlap: subscribe once to the common prefix. After an `unsubscribe` the
 * client sends a `ping` and holds new `subscribe` frames until its `pong`, so frames still in
 * flight for the old subscription are never taken for the new one's. A subscription the node
 * refuses (an `error` frame, e.g. `forbidden`) is dropped and its `onError` is called.
 *
 * Cursors: each subscription keeps the last iteration it has seen (events, the `synced` iteration,
 * and heartbeats, which advance an idle subscription). `onCursor(iteration)` reports it.
 *
 * Reconnect: when the socket drops (or stays silent for 2.5 ping intervals), the client reconnects
 * after an exponential back-off (`minDelay` doubled per failed attempt up to `maxDelay`, each delay
 * drawn at random between half and all of it), at once when the browser comes back online, and
 * resumes every subscription from its cursor. `onStatus` reports "connecting" (first attempt),
 * "connected", "reconnecting" (dropped: waiting or retrying) and "closed" (after `close()`).
 * An expired token shows as `onError` frames (e.g. `token_not_valid`): call `auth(newToken)`.
 *
 * Catch-up after a cursor: when a subscription resumes with a cursor above 0, its catch-up events
 * are held until the `synced` frame. If that frame has `"reset": true` (the node could not honour
 * the cursor, e.g. its database was restored), the subscriber's `onReset()` is called first: it
 * must drop its local state, which the held events (a full catch-up from 0) then rebuild. Without a
 * reset the held events are delivered as usual. Then `onSynced(iteration, {reset})` is called.
 *
 * Offline queue: `post()` can be called at any time. Posts made while disconnected wait in order
 * and are sent once the socket is open; the Promise resolves with the node's report (the `ack`) or
 * rejects with a SpreadError (an `error` frame for that post, or `close()`). A post that was sent
 * but not acknowledged when the socket dropped is sent again after the reconnect (at least once:
 * it may be stored twice, with the same value).
 */

/**
 * An event as the node sends it: `value` for inline UTF-8 values, `value_b64` for other inline
 * values, neither for blobs (GET `/raw/<path>`).
 * @typedef {{id: string, path: string, iteration: number, from: string, date: number,
 *   content_type: string, size: number, complete: boolean, deleted: boolean,
 *   value?: string, value_b64?: string, aborted?: boolean}} SpreadEvent
 */

/**
 * The report of a post: `status` is "ok", "too_late" or "existing".
 * @typedef {{id: string, path: string, status: string, iteration: number,
 *   propagation: Array<{path: string, subscribers: number}>}} PostReport
 */

/** @typedef {"connecting" | "connected" | "reconnecting" | "closed"} Status */

/**
 * @typedef {object} ConnectOptions
 * @property {string} [token] a JWT (from `POST /jwttoken`); needed for posts and private reads
 * @property {(status: Status, detail: {attempt: number, delay?: number}) => void} [onStatus]
 * @property {(frame: {type: "error", code: string, message: string}) => void} [onError]
 *   error frames that belong to no post
 * @property {number} [minDelay=500] first reconnect delay, ms
 * @property {number} [maxDelay=30000] cap of the reconnect delay, ms
 * @property {number} [pingInterval=20000] ms between pings; 2.5 silent intervals drop the socket
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {number} [since=0] resume after this iteration
 * @property {() => void} [onReset] drop local state: a full catch-up from 0 follows
 * @property {(iteration: number, info: {reset: boolean}) => void} [onSynced] after each catch-up
 * @property {(iteration: number) => void} [onCursor] the subscription's cursor advanced
 * @property {(frame: {type: "error", code: string, message: string}) => void} [onError]
 *   the node refused the subscription (it is dropped)
 */

/**
 * @typedef {object} Subscription
 * @property {string} path
 * @property {(event: SpreadEvent) => void} onEvent
 * @property {SubscribeOptions} options
 * @property {number} cursor
 * @property {boolean} live subscribed on the current socket (its frames are expected)
 * @property {boolean} synced
 * @property {SpreadEvent[] | null} held catch-up events waiting for `synced`
 */

/** @typedef {{frame: object, resolve: (r: PostReport) => void, reject: (e: Error) => void}} Post */

const DEFAULTS = { minDelay: 500, maxDelay: 30000, pingInterval: 20000 };
const SILENT_PINGS = 2.5;
const NORMAL_CLOSURE = 1000;

/** An error frame of the node (`code`, `message`), or a post abandoned by `close()`. */
export class SpreadError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "SpreadError";
    this.code = code;
  }
}

/**
 * A segment percent-encoded as the node's canonical paths are (everything but `A-Za-z0-9-_.~`).
 * @param {string} segment
 */
export function encodeSegment(segment) {
  return encodeURIComponent(segment).replace(
    /[!'()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * The canonical path of a list of raw segments, or of a canonical string (slashes trimmed).
 * @param {string | string[]} path
 */
export function canonicalPath(path) {
  if (Array.isArray(path)) return path.map(encodeSegment).join("/");
  return String(path).replace(/^\/+|\/+$/g, "");
}

/**
 * The raw segments of a canonical path (`""` is the root: no segment).
 * @param {string} path
 */
export function splitPath(path) {
  return path === "" ? [] : path.split("/").map(decodeURIComponent);
}

/**
 * Whether the subscription prefix `prefix` covers the topic `path` (itself or a descendant).
 * @param {string} prefix @param {string} path
 */
export function covers(prefix, path) {
  return prefix === "" || path === prefix || path.startsWith(`${prefix}/`);
}

/**
 * An event's inline value: a string, bytes (`value_b64`), or null (a blob, or deleted).
 * @param {SpreadEvent} event
 * @returns {string | Uint8Array | null}
 */
export function eventValue(event) {
  if (event.deleted) return null;
  if (event.value !== undefined) return event.value;
  if (event.value_b64 !== undefined) return Uint8Array.from(atob(event.value_b64), (c) => c.charCodeAt(0));
  return null;
}

/** @param {Uint8Array} bytes */
function toBase64(bytes) {
  const CHUNK = 0x8000;
  let binary = "";
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

/**
 * A websocket URL from `url`: absolute `ws(s):`, `http(s):` (switched to ws), or relative to the page.
 * @param {string} url
 */
function websocketBase(url) {
  const base = new URL(url, globalThis.location?.href);
  if (base.protocol === "http:") base.protocol = "ws:";
  if (base.protocol === "https:") base.protocol = "wss:";
  base.search = "";
  base.hash = "";
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  return base.href;
}

/**
 * Open a client of the node whose websocket endpoint is `url` (e.g. `"/ws/"`). The socket opens
 * on the next microtask, so subscriptions made right after `connect` ride on its URL.
 * @param {string} url
 * @param {ConnectOptions} [options]
 */
export function connect(url, options = {}) {
  return new SpreadClient(url, options);
}

export class SpreadClient {
  /** @param {string} url @param {ConnectOptions} options */
  constructor(url, options) {
    this.base = websocketBase(url);
    this.options = { ...DEFAULTS, ...options };
    this.token = options.token ?? null;
    /** @type {Status} */
    this.status = "connecting";
    /** @type {Map<string, Subscription>} by canonical path, oldest first */
    this.subscriptions = new Map();
    /** @type {Post[]} posts not sent yet */
    this.queue = [];
    this.attempt = 0;
    this.everConnected = false;
    this.closed = false;
    this.nextRef = 0;
    this.reconnectTimer = undefined;
    this.onOnline = () => {
      if (this.reconnectTimer !== undefined) this.open();
    };
    globalThis.addEventListener?.("online", this.onOnline);
    this.resetSocketState();
    queueMicrotask(() => {
      if (!this.closed && !this.socket) this.open();
    });
  }

  /** What belongs to one socket; cleared when it is let go. */
  resetSocketState() {
    /** @type {WebSocket | null} */
    this.socket = null;
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    this.lastFrameAt = 0;
    /** @type {Subscription | null} the subscription carried by the socket's URL */
    this.urlSubscription = null;
    this.urlPath = "";
    /** @type {Map<string, Post>} posts sent, by ref, waiting for their ack */
    this.inflight = new Map();
    /** @type {Map<string, Subscription>} subscribe frames, by ref, until their `synced` */
    this.subscribeRefs = new Map();
    /** @type {Array<() => void>} what to do on each `pong`, in order */
    this.pongWaiters = [];
    this.barriers = 0; // unsubscribes whose `pong` has not come back yet
  }

  /**
   * Subscribe to `path` (a canonical string or raw segments; `""` is the root) and its descendants.
   * One subscription per path and client.
   * @param {string | string[]} path
   * @param {(event: SpreadEvent) => void} onEvent
   * @param {SubscribeOptions} [options]
   * @returns {() => void} unsubscribe
   */
  subscribe(path, onEvent, options = {}) {
    const canonical = canonicalPath(path);
    if (this.closed) throw new SpreadError("closed", "The client is closed.");
    if (this.subscriptions.has(canonical)) {
      throw new SpreadError("already_subscribed", `Already subscribed to ${JSON.stringify(canonical)}.`);
    }
    /** @type {Subscription} */
    const subscription = {
      path: canonical,
      onEvent,
      options,
      cursor: options.since ?? 0,
      live: false,
      synced: false,
      held: null,
    };
    this.subscriptions.set(canonical, subscription);
    this.sendWaitingSubscriptions();
    return () => this.unsubscribe(subscription);
  }

  /**
   * Write `value` at `path`: a string is sent as text, bytes as `value_b64`. Queued while
   * disconnected.
   * @param {string | string[]} path
   * @param {string | ArrayBuffer | ArrayBufferView} value
   * @returns {Promise<PostReport>}
   */
  post(path, value) {
    /** @type {{type: "post", path: string, value?: string, value_b64?: string}} */
    const frame = { type: "post", path: canonicalPath(path) };
    if (typeof value === "string") frame.value = value;
    else if (value instanceof ArrayBuffer) frame.value_b64 = toBase64(new Uint8Array(value));
    else if (ArrayBuffer.isView(value)) {
      frame.value_b64 = toBase64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    } else throw new TypeError("post() takes a string, an ArrayBuffer or a typed array.");
    if (this.closed) return Promise.reject(new SpreadError("closed", "The client is closed."));
    return new Promise((resolve, reject) => {
      this.queue.push({ frame, resolve, reject });
      this.flush();
    });
  }

  /**
   * Use another token from now on (sent as an `auth` frame, and in the URL of later reconnects).
   * @param {string} token
   */
  auth(token) {
    this.token = token;
    if (this.isOpen()) this.send({ type: "auth", token });
  }

  /** Close for good: no reconnect; queued and unacknowledged posts reject. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    globalThis.removeEventListener?.("online", this.onOnline);
    const abandoned = [...this.inflight.values(), ...this.queue];
    this.socket?.close(NORMAL_CLOSURE);
    this.resetSocketState();
    this.queue = [];
    for (const post of abandoned) post.reject(new SpreadError("closed", "The client was closed."));
    this.setStatus("closed");
  }

  // Connection ---------------------------------------------------------------------------------

  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  open() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const [first] = this.subscriptions.values();
    // batch=1: the node sends events many to an `updates` frame (a catch-up of thousands of
    // topics in a few frames).
    const query = new URLSearchParams({ since: String(first ? first.cursor : 0), batch: "1" });
    if (this.token) query.set("token", this.token);
    const path = first ? first.path : "";
    const socket = new WebSocket(`${this.base}${path}?${query}`);
    this.socket = socket;
    this.urlSubscription = first ?? null;
    this.urlPath = path;
    socket.onopen = () => socket === this.socket && this.handleOpen();
    socket.onmessage = (message) => socket === this.socket && this.handleFrame(message.data);
    socket.onclose = () => socket === this.socket && this.handleDrop();
    if (!this.everConnected) this.setStatus("connecting", { attempt: this.attempt });
  }

  handleOpen() {
    this.everConnected = true;
    this.lastFrameAt = Date.now();
    this.setStatus("connected", { attempt: this.attempt });
    const url = this.urlSubscription;
    if (url) {
      this.startCatchUp(url);
      url.live = true;
    }
    // No subscription (posts only), or it went while connecting: drop the URL's subscription.
    if (this.subscriptions.get(this.urlPath) !== url) this.retire(this.urlPath);
    this.sendWaitingSubscriptions();
    this.flush();
    this.pingTimer = setInterval(() => this.keepAlive(), this.options.pingInterval);
  }

  /** Let go of the socket: keep cursors, re-queue unacknowledged posts. */
  detach() {
    const socket = this.socket;
    this.queue = [...this.inflight.values(), ...this.queue];
    this.resetSocketState();
    socket?.close();
    for (const subscription of this.subscriptions.values()) {
      subscription.live = false;
      subscription.synced = false;
      subscription.held = null; // an unfinished catch-up is read again from the cursor
    }
  }

  /** The socket closed or went silent: retry after a back-off. */
  handleDrop() {
    this.detach();
    if (this.closed) return;
    const { minDelay, maxDelay } = this.options;
    const ceiling = Math.min(maxDelay, minDelay * 2 ** this.attempt);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.attempt += 1;
    this.setStatus(this.everConnected ? "reconnecting" : "connecting", { attempt: this.attempt, delay });
    this.reconnectTimer = setTimeout(() => this.open(), delay);
  }

  keepAlive() {
    if (Date.now() - this.lastFrameAt > SILENT_PINGS * this.options.pingInterval) this.handleDrop();
    else this.ping(() => {});
  }

  /** @param {() => void} onPong */
  ping(onPong) {
    this.pongWaiters.push(onPong);
    this.send({ type: "ping" });
  }

  /** @param {object} frame */
  send(frame) {
    this.socket?.send(JSON.stringify(frame));
  }

  /** A new frame reference, unique within this client. @param {string} kind */
  ref(kind) {
    this.nextRef += 1;
    return `${kind}${this.nextRef}`;
  }

  flush() {
    if (!this.isOpen()) return;
    for (const post of this.queue.splice(0)) {
      const ref = this.ref("p");
      this.inflight.set(ref, post);
      this.send({ ...post.frame, ref });
    }
  }

  /** @param {Status} status @param {{attempt: number, delay?: number}} [detail] */
  setStatus(status, detail = { attempt: this.attempt }) {
    const changed = status !== this.status;
    this.status = status;
    if (changed || status === "reconnecting") this.options.onStatus?.(status, detail);
  }

  // Subscriptions ------------------------------------------------------------------------------

  /** Send `subscribe` for the subscriptions not live on the socket, unless an unsubscribe's
   * frames may still be in flight. */
  sendWaitingSubscriptions() {
    if (!this.isOpen() || this.barriers > 0) return;
    for (const subscription of this.subscriptions.values()) {
      if (subscription.live) continue;
      this.startCatchUp(subscription);
      subscription.live = true;
      const ref = this.ref("s");
      this.subscribeRefs.set(ref, subscription);
      this.send({ type: "subscribe", path: subscription.path, since: subscription.cursor, ref });
    }
  }

  /** @param {Subscription} subscription */
  startCatchUp(subscription) {
    subscription.synced = false;
    // After a cursor the catch-up may turn out to be a reset: hold it until `synced` says.
    subscription.held = subscription.cursor > 0 ? [] : null;
  }

  /** @param {Subscription} subscription */
  unsubscribe(subscription) {
    if (this.subscriptions.get(subscription.path) !== subscription) return;
    this.subscriptions.delete(subscription.path);
    if (subscription.live && this.isOpen()) this.retire(subscription.path);
    subscription.live = false;
  }

  /** Unsubscribe on the socket; hold new subscribes until the node has answered a ping after it.
   * @param {string} path */
  retire(path) {
    this.send({ type: "unsubscribe", path, ref: this.ref("u") });
    this.barriers += 1;
    this.ping(() => {
      this.barriers -= 1;
      this.sendWaitingSubscriptions();
    });
  }

  /** The node refused a subscription: drop it. @param {Subscription} subscription @param {any} frame */
  fail(subscription, frame) {
    if (this.subscriptions.get(subscription.path) === subscription) {
      this.subscriptions.delete(subscription.path);
    }
    subscription.live = false;
    subscription.options.onError?.(frame);
  }

  /** @param {string} data */
  handleFrame(data) {
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this.options.onError?.({ type: "error", code: "bad_frame", message: String(data).slice(0, 200) });
      return;
    }
    if (frame.type !== "error") this.attempt = 0; // a working connection: back-off starts over
    const live = [...this.subscriptions.values()].filter((subscription) => subscription.live);
    switch (frame.type) {
      case "update":
        this.deliverEach(live, [frame.event]);
        break;
      case "updates":
        this.deliverEach(live, frame.events);
        break;
      case "synced": {
        const waiting = live.find((subscription) => !subscription.synced);
        if (waiting) this.finishCatchUp(waiting, frame.iteration, frame.reset === true);
        break;
      }
      case "heartbeat":
        for (const subscription of live) {
          if (subscription.synced) this.advance(subscription, frame.iteration);
        }
        break;
      case "pong":
        this.pongWaiters.shift()?.();
        break;
      case "ack": {
        const post = this.inflight.get(frame.ref);
        this.inflight.delete(frame.ref);
        post?.resolve(frame.report);
        break;
      }
      case "error":
        this.handleError(frame);
        break;
      default: // frame types of later versions
    }
  }

  /** @param {{type: "error", code: string, message: string, ref?: string}} frame */
  handleError(frame) {
    const post = frame.ref === undefined ? undefined : this.inflight.get(frame.ref);
    if (post) {
      this.inflight.delete(/** @type {string} */ (frame.ref));
      post.reject(new SpreadError(frame.code, frame.message));
      return;
    }
    // Errors without a ref come from the connection itself: the URL's subscription or its token.
    const url = this.urlSubscription;
    let refused = frame.ref === undefined ? undefined : this.subscribeRefs.get(frame.ref);
    if (frame.ref === undefined && frame.code === "forbidden" && url?.live && !url.synced) refused = url;
    if (refused) this.fail(refused, frame);
    this.options.onError?.(frame);
  }

  /** @param {Subscription[]} live @param {SpreadEvent[]} events in the node's order */
  deliverEach(live, events) {
    for (const event of events) {
      for (const subscription of live) {
        if (covers(subscription.path, event.path)) this.deliver(subscription, event);
      }
    }
  }

  /** @param {Subscription} subscription @param {SpreadEvent} event */
  deliver(subscription, event) {
    if (subscription.held) {
      subscription.held.push(event);
    } else if (event.iteration > subscription.cursor) {
      subscription.onEvent(event);
      this.advance(subscription, event.iteration);
    }
  }

  /** @param {Subscription} subscription @param {number} iteration @param {boolean} reset */
  finishCatchUp(subscription, iteration, reset) {
    for (const [ref, waiting] of this.subscribeRefs) {
      if (waiting === subscription) this.subscribeRefs.delete(ref);
    }
    const held = subscription.held ?? [];
    subscription.held = null;
    subscription.synced = true;
    if (reset) {
      subscription.cursor = 0;
      subscription.options.onReset?.();
    }
    for (const event of held) this.deliver(subscription, event);
    this.advance(subscription, iteration);
    subscription.options.onSynced?.(iteration, { reset });
  }

  /** @param {Subscription} subscription @param {number} iteration */
  advance(subscription, iteration) {
    if (iteration > subscription.cursor) {
      subscription.cursor = iteration;
      subscription.options.onCursor?.(iteration);
    }
  }
}
