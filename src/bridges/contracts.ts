import type { MatrixUserId } from "../shared/ids.ts";
import type { BridgePlacement } from "../provisioning/bridge-driver.ts";
import type { BridgeCredentials, BridgeNetwork } from "./networks.ts";

/**
 * The two seams between the bridge reconciler and the bridge-specific code:
 * rendering a bridge's files (config-render.ts) and logging its relay in
 * through the bridge's provisioning API (relay-login.ts).
 */

/** Everything a bridge's config and registration are made of. */
export interface BridgeRenderInput {
  readonly network: BridgeNetwork;
  /** The tenant's Matrix server_name. */
  readonly serverName: string;
  readonly placement: BridgePlacement;
  /** Registration id, unique per tenant homeserver, e.g. "switchboard-slack". */
  readonly registrationId: string;
  readonly asToken: string;
  readonly hsToken: string;
  /** Shared secret of the bridge's provisioning API (>= 16 characters). */
  readonly provisioningSecret: string;
  /** The service's relay account on this homeserver (bridge admin, logged in as the relay). */
  readonly relayUserId: MatrixUserId;
  /** The tenant's admins as Matrix IDs: bridge admins. */
  readonly adminUserIds: readonly MatrixUserId[];
  /** Relay login ids to offer as default relays (bridgev2), once known. */
  readonly defaultRelayLoginIds: readonly string[];
  /** Base URL where remote networks can fetch public media (Discord webhook avatars); absent: avatars off. */
  readonly publicMediaUrl?: string;
  /** Network settings that belong in the config, not the login (Telegram's api_id/api_hash). */
  readonly credentials: BridgeCredentials | null;
}

export interface RenderedBridge {
  /** config.yaml for the bridge (secrets inside: 0600). */
  readonly configYaml: string;
  /** The registration YAML for the homeserver and the bridge. */
  readonly registrationYaml: string;
  /** The registration's user namespace regexes (tests, ghost detection). */
  readonly userNamespaces: readonly string[];
}

/** What a completed relay login reports. */
export interface RelayLogin {
  /** bridgev2 user_login_id, or the Discord user id of the bot. */
  readonly loginId: string;
  /** Human-readable name of the remote account ("Acme - switchboard", "switchboard#0001"). */
  readonly remoteName: string | null;
}

/**
 * Client of one bridge's provisioning API, authenticated with its shared
 * secret and acting as the relay account (`?user_id=`). Errors are
 * AppErrors: `unavailable` (bridge not reachable or 5xx: retry later),
 * `bad_request` (the network refused the credentials, or a step did not
 * match: the message says what to fix; retrying with the same credentials
 * fails again). A failed login leaves no login process open on the bridge
 * (it is cancelled) and no half-made login behind.
 */
export interface RelayLoginClient {
  /** Resolves when the provisioning API answers authenticated requests. */
  ready(): Promise<void>;
  /** Logs the relay account in with the network's bot credentials. */
  login(credentials: BridgeCredentials): Promise<RelayLogin>;
  /** Whether the relay account is logged in right now, and as which login. */
  status(): Promise<{ readonly loggedIn: boolean; readonly loginId: string | null }>;
  /** Logs the relay out (all its logins). Not logged in is fine. */
  logout(): Promise<void>;
}
