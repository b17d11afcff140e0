package dev.tokenversion.keycloak;

import org.junit.jupiter.api.Test;

import java.util.Optional;

import static dev.tokenversion.keycloak.EventMapper.UserState.*;
import static org.junit.jupiter.api.Assertions.*;

class EventMapperTest {

    private static final long NOW = 1_763_750_000_123L;

    private static OutboundEvent user(String type, String userId, String sessionId) {
        return EventMapper.fromUserEvent("ev-1", type, userId, sessionId, null, NOW).orElseThrow();
    }

    private static Optional<OutboundEvent> admin(String op, String res, String path, String rep,
                                                 EventMapper.UserState state) {
        return EventMapper.fromAdminEvent("adm-1", op, res, path, rep, state, "realm-id", NOW);
    }

    @Test
    void userEvents() {
        OutboundEvent logout = user("LOGOUT", "u1", "s1");
        assertEquals("session.logout", logout.type());
        assertEquals("s1", logout.sessionId());
        assertEquals("u1", logout.userId());
        assertEquals("LOGOUT", logout.keycloakEvent());
        assertEquals("ev-1", logout.id());
        assertEquals(NOW, logout.time());

        for (String t : new String[]{"UPDATE_PASSWORD", "UPDATE_CREDENTIAL", "RESET_PASSWORD", "REMOVE_CREDENTIAL"}) {
            OutboundEvent e = user(t, "u1", "s1");
            assertEquals("user.credentials_changed", e.type(), t);
            assertEquals(t, e.keycloakEvent());
        }
        assertEquals("user.deleted", user("DELETE_ACCOUNT", "u1", null).type());
    }

    @Test
    void userEventsIgnored() {
        assertTrue(EventMapper.fromUserEvent("e", "LOGIN", "u1", "s1", null, NOW).isEmpty());
        assertTrue(EventMapper.fromUserEvent("e", "LOGOUT_ERROR", "u1", "s1", "x", NOW).isEmpty());
        assertTrue(EventMapper.fromUserEvent("e", "LOGOUT", "u1", "s1", "invalid_token", NOW).isEmpty(),
                "failed events are not revocations");
        assertTrue(EventMapper.fromUserEvent("e", "LOGOUT", "u1", null, null, NOW).isEmpty(),
                "session.logout needs a session id");
        assertTrue(EventMapper.fromUserEvent("e", "UPDATE_PASSWORD", null, null, null, NOW).isEmpty(),
                "user.* needs a user id");
        assertTrue(EventMapper.fromUserEvent("e", null, "u", "s", null, NOW).isEmpty());
    }

    @Test
    void missingEventIdGetsAUuid() {
        OutboundEvent e = EventMapper.fromUserEvent(null, "LOGOUT", "u1", "s1", null, NOW).orElseThrow();
        assertEquals(36, e.id().length());
    }

    @Test
    void adminUserEvents() {
        OutboundEvent logout = admin("ACTION", "USER", "users/u1/logout", null, UNKNOWN).orElseThrow();
        assertEquals("user.logout", logout.type());
        assertEquals("u1", logout.userId());
        assertEquals("adm-1", logout.id());
        assertEquals("ADMIN_USER_LOGOUT", logout.keycloakEvent());

        OutboundEvent reset = admin("ACTION", "USER", "users/u1/reset-password", null, UNKNOWN).orElseThrow();
        assertEquals("user.credentials_changed", reset.type());
        assertEquals("u1", reset.userId());

        OutboundEvent cred = admin("ACTION", "USER", "users/u1/credentials/c-9", null, UNKNOWN).orElseThrow();
        assertEquals("user.credentials_changed", cred.type());
        assertEquals("ADMIN_REMOVE_CREDENTIAL", cred.keycloakEvent());

        OutboundEvent del = admin("DELETE", "USER", "users/u1", "{\"id\":\"u1\",\"username\":\"alice\"}", UNKNOWN)
                .orElseThrow();
        assertEquals("user.deleted", del.type());
        assertEquals("u1", del.userId());
    }

    @Test
    void adminUserUpdateOnlyWhenLeftDisabled() {
        assertEquals("user.disabled", admin("UPDATE", "USER", "users/u1", null, DISABLED).orElseThrow().type());
        assertTrue(admin("UPDATE", "USER", "users/u1", "{\"enabled\":false}", ENABLED).isEmpty(),
                "the session's view of the user wins over the representation");
        assertEquals("user.disabled",
                admin("UPDATE", "USER", "users/u1", "{\"enabled\":false}", UNKNOWN).orElseThrow().type());
        assertTrue(admin("UPDATE", "USER", "users/u1", "{\"enabled\":true}", UNKNOWN).isEmpty());
        assertTrue(admin("UPDATE", "USER", "users/u1", null, UNKNOWN).isEmpty());
        assertTrue(admin("UPDATE", "USER", "users/u1", "garbage", UNKNOWN).isEmpty());
        assertTrue(admin("UPDATE", "USER", "users/u1/groups/g1", null, DISABLED).isEmpty());
    }

    @Test
    void adminRealmEvents() {
        OutboundEvent all = admin("ACTION", "REALM", "logout-all", "{\"successRequests\":[]}", UNKNOWN).orElseThrow();
        assertEquals("realm.logout_all", all.type());
        assertNull(all.userId());
        assertEquals("ADMIN_LOGOUT_ALL", all.keycloakEvent());
        assertEquals("ADMIN_PUSH_REVOCATION",
                admin("ACTION", "REALM", "push-revocation", null, UNKNOWN).orElseThrow().keycloakEvent());
    }

    @Test
    void realmNotBeforeSetToNow() {
        long nowSec = NOW / 1000;
        OutboundEvent e = admin("UPDATE", "REALM", null, "{\"realm\":\"demo\",\"notBefore\":" + (nowSec - 3) + "}",
                UNKNOWN).orElseThrow();
        assertEquals("realm.logout_all", e.type());
        assertEquals("ADMIN_REALM_NOT_BEFORE", e.keycloakEvent());
        assertEquals("realm-not-before:realm-id:" + (nowSec - 3), e.id(), "stable id: a re-save is a duplicate");

        assertTrue(admin("UPDATE", "REALM", null, "{\"notBefore\":0}", UNKNOWN).isEmpty());
        assertTrue(admin("UPDATE", "REALM", null, "{\"notBefore\":" + (nowSec - 3600) + "}", UNKNOWN).isEmpty());
        assertTrue(admin("UPDATE", "REALM", null, "{\"displayName\":\"x\"}", UNKNOWN).isEmpty());
        assertTrue(admin("UPDATE", "REALM", null, null, UNKNOWN).isEmpty());
    }

    @Test
    void adminSessionDelete() {
        OutboundEvent e = admin("DELETE", "USER_SESSION", "sessions/s-1", "{\"offline\":false}", UNKNOWN).orElseThrow();
        assertEquals("session.logout", e.type());
        assertEquals("s-1", e.sessionId());
    }

    @Test
    void adminEventsIgnored() {
        assertTrue(admin("CREATE", "USER", "users/u1", null, ENABLED).isEmpty());
        assertTrue(admin("ACTION", "USER", "users/u1/send-verify-email", null, UNKNOWN).isEmpty());
        assertTrue(admin("ACTION", "USER", "users/u1/execute-actions-email", null, UNKNOWN).isEmpty());
        assertTrue(admin("DELETE", "USER", "users/u1/federated-identity/google", null, UNKNOWN).isEmpty());
        assertTrue(admin("DELETE", "GROUP_MEMBERSHIP", "users/u1/groups/g", null, UNKNOWN).isEmpty());
        assertTrue(admin("ACTION", "CLIENT", "clients/c1/push-revocation", null, UNKNOWN).isEmpty());
        assertTrue(admin("ACTION", "REALM", "clear-user-cache", null, UNKNOWN).isEmpty());
        assertTrue(admin("UPDATE", "REALM", "events/config", "{\"notBefore\":" + NOW / 1000 + "}", UNKNOWN).isEmpty());
        assertTrue(admin("DELETE", "USER_LOGIN_FAILURE", "attack-detection/brute-force/users/u1", null, UNKNOWN).isEmpty());
        assertTrue(admin(null, "USER", "users/u1", null, UNKNOWN).isEmpty());
        assertTrue(admin("ACTION", null, "logout-all", null, UNKNOWN).isEmpty());
    }
}
