package dev.tokenversion.keycloak;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.*;

class ClaimsClientTest {

    private static long parse(int status, String body) throws ClaimsClient.ClaimsException {
        return ClaimsClient.parse(status, body == null ? null : body.getBytes(StandardCharsets.UTF_8), "u1");
    }

    private static void refused(int status, String body) {
        assertThrows(ClaimsClient.ClaimsException.class, () -> parse(status, body), body);
    }

    @Test
    void acceptsTheContractAnswer() throws Exception {
        assertEquals(3, parse(200, "{\"sub\":\"u1\",\"token_version\":3}"));
        assertEquals(0, parse(200, "{\"token_version\":0}"));
        assertEquals(4_000_000_000L, parse(200, "{\"sub\":\"u1\",\"token_version\":4000000000}"));
    }

    @Test
    void refusesEverythingElse() {
        refused(500, "{\"token_version\":3}");
        refused(401, "{\"error\":\"invalid_secret\"}");
        refused(200, "");
        refused(200, null);
        refused(200, "not json");
        refused(200, "[1,2]");
        refused(200, "{}");
        refused(200, "{\"token_version\":null}");
        refused(200, "{\"token_version\":\"3\"}");
        refused(200, "{\"token_version\":3.5}");
        refused(200, "{\"token_version\":-1}");
        refused(200, "{\"token_version\":true}");
        refused(200, "{\"token_version\":1e400}");
        refused(200, "{\"token_version\":123456789012345678901234567890}");
        refused(200, "{\"sub\":\"someone-else\",\"token_version\":3}");
        refused(200, "{\"token_version\":1," + "\"pad\":\"" + "x".repeat(20_000) + "\"}");
    }

    @Test
    void errorMessagesNameTheCodeNotTheBody() {
        ClaimsClient.ClaimsException e = assertThrows(ClaimsClient.ClaimsException.class,
                () -> parse(401, "{\"error\":\"invalid_secret\",\"detail\":\"nope\"}"));
        assertEquals("HTTP 401 (invalid_secret)", e.getMessage());
    }
}
