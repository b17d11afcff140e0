package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class JsonEncodingTest {

    private static JsonNode read(String s) throws Exception {
        return Json.MAPPER.readTree(s);
    }

    @Test
    void claimsRequestEscapesEverything() throws Exception {
        String nasty = "al\"ice\\\n\u0000\u2028é😀</script>";
        ClaimsRequest r = new ClaimsRequest("0f1d2c3b-4a59", "http://127.0.0.1:8080/realms/demo", nasty,
                "a\"@example.com", "web", "sid-1");
        JsonNode n = read(r.toJson());
        assertEquals("0f1d2c3b-4a59", n.get("sub").asText());
        assertEquals("http://127.0.0.1:8080/realms/demo", n.get("issuer").asText());
        assertEquals(nasty, n.get("username").asText());
        assertEquals("a\"@example.com", n.get("email").asText());
        assertEquals("web", n.get("client_id").asText());
        assertEquals("sid-1", n.get("session_id").asText());
    }

    @Test
    void claimsRequestSendsNullsAndDropsOverlongOptionalFields() throws Exception {
        ClaimsRequest r = new ClaimsRequest("u", null, "x".repeat(256), null, "x".repeat(255), null);
        JsonNode n = read(r.toJson());
        assertFalse(n.has("issuer"), "issuer omitted when unknown: the provider then uses its default");
        assertTrue(n.get("username").isNull());
        assertTrue(n.get("email").isNull());
        assertEquals(255, n.get("client_id").asText().length());
        assertTrue(n.get("session_id").isNull());
    }

    @Test
    void outboundEventShape() throws Exception {
        OutboundEvent e = new OutboundEvent("id-1", OutboundEvent.USER_CREDENTIALS_CHANGED,
                "http://127.0.0.1:8080/realms/demo", "u-1", null, "UPDATE_PASSWORD", 1763750000123L);
        JsonNode n = read(e.toJson());
        assertEquals("id-1", n.get("id").asText());
        assertEquals("user.credentials_changed", n.get("type").asText());
        assertEquals("http://127.0.0.1:8080/realms/demo", n.get("issuer").asText());
        assertEquals("u-1", n.get("user_id").asText());
        assertTrue(n.get("session_id").isNull());
        assertEquals("UPDATE_PASSWORD", n.get("keycloak_event").asText());
        assertEquals(1763750000123L, n.get("time").asLong());
        assertTrue(n.get("time").isIntegralNumber());
    }
}
