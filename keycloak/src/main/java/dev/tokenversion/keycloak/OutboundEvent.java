package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.node.ObjectNode;

/** Body of {@code POST /tokenversion/events} (docs/contract.md). */
public record OutboundEvent(String id, String type, String issuer, String userId, String sessionId,
                            String keycloakEvent, long time) {

    public static final String SESSION_LOGOUT = "session.logout";
    public static final String USER_LOGOUT = "user.logout";
    public static final String USER_CREDENTIALS_CHANGED = "user.credentials_changed";
    public static final String USER_DISABLED = "user.disabled";
    public static final String USER_DELETED = "user.deleted";
    public static final String REALM_LOGOUT_ALL = "realm.logout_all";

    public OutboundEvent withIssuer(String newIssuer) {
        return new OutboundEvent(id, type, newIssuer, userId, sessionId, keycloakEvent, time);
    }

    public String toJson() {
        ObjectNode o = Json.object();
        o.put("id", id);
        o.put("type", type);
        if (issuer != null) {
            o.put("issuer", issuer);
        }
        o.put("user_id", userId);
        o.put("session_id", sessionId);
        o.put("keycloak_event", keycloakEvent);
        if (time > 0) {
            o.put("time", time);
        }
        return Json.write(o);
    }
}
