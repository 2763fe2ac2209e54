// What the gate keeps on the device, in IndexedDB: its setup, the installed trust list (its
// signed bytes, checked again at every start) and the shift's tally. Never a traveller's data.

export interface GateConfig {
  airport: string;
  roots: string[];
  trustListUrl: string;
}

export interface Tally {
  shiftStarted: number;
  accept: number;
  reject: number;
  degraded: number;
}

const DB = "ehac-gate";
const STORE = "kv";

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run<T>(mode: IDBTransactionMode, action: (store: IDBObjectStore) => IDBRequest): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const request = action(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result as T);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

export const get = <T>(key: string) => run<T | undefined>("readonly", (s) => s.get(key));
export const put = (key: string, value: unknown) => run<IDBValidKey>("readwrite", (s) => s.put(value, key));
