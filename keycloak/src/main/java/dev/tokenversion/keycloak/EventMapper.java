package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.Optional;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Maps Keycloak user and admin events (as plain strings, so this is testable without Keycloak) to the contract's
 * event types. The admin event shapes are those Keycloak 26.7 emits (see README.md):
 *
 * <pre>
 * POST   users/{id}/logout                  USER          ACTION  -> user.logout
 * PUT    users/{id}/reset-password          USER          ACTION  -> user.credentials_changed
 * DELETE users/{id}/credentials/{credId}    USER          ACTION  -> user.credentials_changed
 * PUT    users/{id}                         USER          UPDATE  -> user.disabled (if the user is now disabled)
 * DELETE users/{id}                         USER          DELETE  -> user.deleted
 * POST   logout-all                         REALM         ACTION  -> realm.logout_all
 * POST   push-revocation                    REALM         ACTION  -> realm.logout_all
 * PUT    (realm; path null)                 REALM         UPDATE  -> realm.logout_all if its notBefore is recent
 * DELETE sessions/{sid}                     USER_SESSION  DELETE  -> session.logout
 * </pre>
 */
public final class EventMapper {

    /** A realm not-before within this many seconds of the event counts as "set to now". */
    static final long NOT_BEFORE_WINDOW_SECONDS = 120;

    private static final String ID = "([^/]+)";
    private static final Pattern USER = Pattern.compile("^users/" + ID + "$");
    private static final Pattern USER_LOGOUT = Pattern.compile("^users/" + ID + "/logout$");
    private static final Pattern USER_RESET_PASSWORD = Pattern.compile("^users/" + ID + "/reset-password$");
    private static final Pattern USER_CREDENTIAL = Pattern.compile("^users/" + ID + "/credentials/" + ID + "$");
    private static final Pattern SESSION = Pattern.compile("^sessions/" + ID + "$");

    private EventMapper() {
    }

    /**
     * A user event.
     *
     * @param type  Keycloak's EventType name, e.g. LOGOUT
     * @param error the event's error, or null for a successful event (only those are mapped)
     */
    public static Optional<OutboundEvent> fromUserEvent(String id, String type, String userId, String sessionId,
                                                        String error, long time) {
        if (type == null || error != null) {
            return Optional.empty();
        }
        String mapped = switch (type) {
            case "LOGOUT" -> sessionId == null ? null : OutboundEvent.SESSION_LOGOUT;
            case "UPDATE_PASSWORD", "UPDATE_CREDENTIAL", "RESET_PASSWORD", "REMOVE_CREDENTIAL" ->
                    userId == null ? null : OutboundEvent.USER_CREDENTIALS_CHANGED;
            case "DELETE_ACCOUNT" -> userId == null ? null : OutboundEvent.USER_DELETED;
            default -> null;
        };
        if (mapped == null) {
            return Optional.empty();
        }
        return Optional.of(new OutboundEvent(idOrRandom(id), mapped, null, userId, sessionId, type, time));
    }

    /** What the listener learns about a user named by an admin event, looked up in the session. */
    public enum UserState { ENABLED, DISABLED, UNKNOWN }

    /**
     * An admin event.
     *
     * @param operationType  OperationType name (CREATE, UPDATE, DELETE, ACTION)
     * @param resourceType   ResourceType name (USER, REALM, USER_SESSION, ...)
     * @param resourcePath   the realm-relative path, e.g. users/{id}/logout
     * @param representation the JSON representation, or null (it is filled in only for some operations)
     * @param userState      for USER UPDATE: whether the user is enabled after the update
     */
    public static Optional<OutboundEvent> fromAdminEvent(String id, String operationType, String resourceType,
                                                         String resourcePath, String representation,
                                                         UserState userState, String realmId, long time) {
        if (operationType == null || resourceType == null) {
            return Optional.empty();
        }
        String path = resourcePath == null ? "" : stripSlashes(resourcePath);
        String eventId = idOrRandom(id);
        Matcher m;
        switch (resourceType) {
            case "USER" -> {
                if ("ACTION".equals(operationType)) {
                    if ((m = USER_LOGOUT.matcher(path)).matches()) {
                        return user(eventId, OutboundEvent.USER_LOGOUT, m.group(1), "ADMIN_USER_LOGOUT", time);
                    }
                    if ((m = USER_RESET_PASSWORD.matcher(path)).matches()) {
                        return user(eventId, OutboundEvent.USER_CREDENTIALS_CHANGED, m.group(1),
                                "ADMIN_RESET_PASSWORD", time);
                    }
                    if ((m = USER_CREDENTIAL.matcher(path)).matches()) {
                        return user(eventId, OutboundEvent.USER_CREDENTIALS_CHANGED, m.group(1),
                                "ADMIN_REMOVE_CREDENTIAL", time);
                    }
                } else if ("UPDATE".equals(operationType)) {
                    if ((m = USER.matcher(path)).matches()) {
                        boolean disabled = switch (userState == null ? UserState.UNKNOWN : userState) {
                            case DISABLED -> true;
                            case ENABLED -> false;
                            case UNKNOWN -> representationSaysDisabled(representation);
                        };
                        if (disabled) {
                            return user(eventId, OutboundEvent.USER_DISABLED, m.group(1), "ADMIN_USER_UPDATE", time);
                        }
                    }
                } else if ("DELETE".equals(operationType)) {
                    if ((m = USER.matcher(path)).matches()) {
                        return user(eventId, OutboundEvent.USER_DELETED, m.group(1), "ADMIN_USER_DELETE", time);
                    }
                }
            }
            case "REALM" -> {
                if ("ACTION".equals(operationType)) {
                    if ("logout-all".equals(path)) {
                        return realm(eventId, "ADMIN_LOGOUT_ALL", time);
                    }
                    if ("push-revocation".equals(path)) {
                        return realm(eventId, "ADMIN_PUSH_REVOCATION", time);
                    }
                } else if ("UPDATE".equals(operationType) && path.isEmpty()) {
                    long notBefore = realmNotBefore(representation);
                    long nowSeconds = (time > 0 ? time : System.currentTimeMillis()) / 1000;
                    if (notBefore > 0 && Math.abs(nowSeconds - notBefore) <= NOT_BEFORE_WINDOW_SECONDS) {
                        // a stable id: saving the realm again with the same not-before is acknowledged as a duplicate
                        return realm("realm-not-before:" + realmId + ":" + notBefore, "ADMIN_REALM_NOT_BEFORE", time);
                    }
                }
            }
            case "USER_SESSION" -> {
                if ("DELETE".equals(operationType) && (m = SESSION.matcher(path)).matches()) {
                    return Optional.of(new OutboundEvent(eventId, OutboundEvent.SESSION_LOGOUT, null, null,
                            m.group(1), "ADMIN_SESSION_DELETE", time));
                }
            }
            default -> {
                return Optional.empty();
            }
        }
        return Optional.empty();
    }

    private static Optional<OutboundEvent> user(String id, String type, String userId, String kcEvent, long time) {
        return Optional.of(new OutboundEvent(id, type, null, userId, null, kcEvent, time));
    }

    private static Optional<OutboundEvent> realm(String id, String kcEvent, long time) {
        return Optional.of(new OutboundEvent(id, OutboundEvent.REALM_LOGOUT_ALL, null, null, null, kcEvent, time));
    }

    static boolean representationSaysDisabled(String representation) {
        JsonNode n = readJson(representation);
        if (n == null) {
            return false;
        }
        JsonNode enabled = n.get("enabled");
        return enabled != null && enabled.isBoolean() && !enabled.booleanValue();
    }

    static long realmNotBefore(String representation) {
        JsonNode n = readJson(representation);
        JsonNode nb = n == null ? null : n.get("notBefore");
        return nb != null && nb.canConvertToLong() ? nb.longValue() : 0L;
    }

    private static JsonNode readJson(String s) {
        if (s == null || s.isBlank()) {
            return null;
        }
        try {
            JsonNode n = Json.MAPPER.readTree(s);
            return n != null && n.isObject() ? n : null;
        } catch (Exception e) {
            return null;
        }
    }

    private static String stripSlashes(String p) {
        int start = 0;
        int end = p.length();
        while (start < end && p.charAt(start) == '/') {
            start++;
        }
        while (end > start && p.charAt(end - 1) == '/') {
            end--;
        }
        return p.substring(start, end);
    }

    private static String idOrRandom(String id) {
        return id == null || id.isBlank() || id.length() > 255 ? UUID.randomUUID().toString() : id;
    }
}
