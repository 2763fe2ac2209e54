// The gate works with no network after its first load: the app's files come from this cache.
// The trust list is never cached here: the app keeps the installed one in IndexedDB and asks
// the network for a newer one, and a cached copy could only ever be an old list.

declare const APP_FILES: string[];
declare const APP_VERSION: string;

const worker = self as unknown as ServiceWorkerGlobalScope;
const CACHE = `ehac-gate-${APP_VERSION}`;

worker.addEventListener("install", (event: ExtendableEvent) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(APP_FILES)).then(() => worker.skipWaiting()));
});

worker.addEventListener("activate", (event: ExtendableEvent) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("ehac-gate-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => worker.clients.claim()),
  );
});

worker.addEventListener("fetch", (event: FetchEvent) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== worker.location.origin || url.pathname.endsWith(".cose")) return;
  event.respondWith(
    caches.open(CACHE).then(async (cache) => {
      const cached = await cache.match(event.request, { ignoreSearch: true });
      return cached ?? fetch(event.request);
    }),
  );
});
