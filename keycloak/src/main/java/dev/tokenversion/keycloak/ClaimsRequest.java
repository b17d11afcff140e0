package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Body of {@code POST /tokenversion/claims} (docs/contract.md). Optional fields longer than the contract's 255
 * characters are sent as null rather than making the provider refuse the whole request: they are only stored
 * for information.
 */
public record ClaimsRequest(String sub, String issuer, String username, String email, String clientId,
                            String sessionId) {

    static final int MAX_OPTIONAL_LENGTH = 255;

    public String toJson() {
        ObjectNode o = Json.object();
        o.put("sub", sub);
        if (issuer != null) {
            o.put("issuer", issuer);
        }
        o.put("username", optional(username));
        o.put("email", optional(email));
        o.put("client_id", optional(clientId));
        o.put("session_id", optional(sessionId));
        return Json.write(o);
    }

    private static String optional(String v) {
        return v == null || v.length() > MAX_OPTIONAL_LENGTH ? null : v;
    }
}
