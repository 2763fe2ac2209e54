// What the gate app and the tests share: the verifier and the trust list, nothing of the page.
export { verify, type Verdict, type OfficerView, type RejectReason, type DegradedReason } from "./verify";
export { GateTrustList, TrustError, parseRootPem, type RootKey, type TrustErrorCode } from "./trust";
