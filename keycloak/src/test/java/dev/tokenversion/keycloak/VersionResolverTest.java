package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.net.URI;
import java.util.OptionalLong;

import static org.junit.jupiter.api.Assertions.*;

class VersionResolverTest {

    private StubServer stub;
    private VersionResolver resolver;

    @BeforeEach
    void setUp() throws Exception {
        stub = new StubServer();
        resolver = new VersionResolver(new VersionCache(100));
    }

    @AfterEach
    void tearDown() {
        stub.close();
    }

    private VersionResolver.Settings settings(URI uri, FailurePolicy policy) {
        return new VersionResolver.Settings(uri, "s3cret", 300, 500, policy);
    }

    private static ClaimsRequest request(String sub) {
        return new ClaimsRequest(sub, "http://127.0.0.1:8080/realms/demo", "alice", "alice@example.com", "web", "sid");
    }

    @Test
    void usesTheProviderAnswerAndSendsTheContractRequest() throws Exception {
        stub.answer(200, "{\"sub\":\"u1\",\"token_version\":7}");
        VersionResolver.Result r = resolver.resolve("realm", request("u1"),
                settings(stub.uri("/tokenversion/claims"), FailurePolicy.OMIT_CLAIM));
        assertEquals(OptionalLong.of(7), r.version());
        assertEquals(VersionResolver.Source.PROVIDER, r.source());

        StubServer.Received got = stub.received.get(0);
        assertEquals("POST", got.method());
        assertEquals("/tokenversion/claims", got.path());
        assertEquals("application/json", got.contentType());
        assertEquals("s3cret", got.secret());
        JsonNode body = Json.MAPPER.readTree(got.body());
        assertEquals("u1", body.get("sub").asText());
        assertEquals("http://127.0.0.1:8080/realms/demo", body.get("issuer").asText());
        assertEquals("web", body.get("client_id").asText());
        assertEquals("sid", body.get("session_id").asText());
    }

    @Test
    void fallsBackToTheRememberedVersionOnErrorsGarbageHangsAndRefusedConnections() throws Exception {
        URI uri = stub.uri("/tokenversion/claims");
        stub.answer(200, "{\"sub\":\"u1\",\"token_version\":4}");
        resolver.resolve("realm", request("u1"), settings(uri, FailurePolicy.FAIL));

        stub.answer(503, "{\"error\":\"down\"}");
        assertRemembered(4, resolver.resolve("realm", request("u1"), settings(uri, FailurePolicy.FAIL)));

        stub.answer(200, "<html>oops</html>");
        assertRemembered(4, resolver.resolve("realm", request("u1"), settings(uri, FailurePolicy.FAIL)));

        stub.hang();
        long t0 = System.nanoTime();
        assertRemembered(4, resolver.resolve("realm", request("u1"), settings(uri, FailurePolicy.FAIL)));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms >= 400 && ms < 2000, "a hung provider costs about connect+read timeout, took " + ms + " ms");

        URI closed = URI.create("http://127.0.0.1:" + StubServer.closedPort() + "/tokenversion/claims");
        // remembered per endpoint: another endpoint has nothing remembered
        assertThrows(VersionResolver.VersionUnavailableException.class,
                () -> resolver.resolve("realm", request("u1"), settings(closed, FailurePolicy.FAIL)));
    }

    @Test
    void omitClaimPolicyWithNothingRemembered() throws Exception {
        stub.answer(500, "");
        VersionResolver.Result r = resolver.resolve("realm", request("new-user"),
                settings(stub.uri("/tokenversion/claims"), FailurePolicy.OMIT_CLAIM));
        assertTrue(r.version().isEmpty());
        assertEquals(VersionResolver.Source.NONE, r.source());
    }

    @Test
    void failPolicyWithNothingRemembered() throws Exception {
        stub.hang();
        long t0 = System.nanoTime();
        assertThrows(VersionResolver.VersionUnavailableException.class,
                () -> resolver.resolve("realm", request("new-user"),
                        settings(stub.uri("/tokenversion/claims"), FailurePolicy.FAIL)));
        assertTrue((System.nanoTime() - t0) / 1_000_000 < 2000);
    }

    @Test
    void connectionRefusedIsAFailureNotAnException() throws Exception {
        URI closed = URI.create("http://127.0.0.1:" + StubServer.closedPort() + "/tokenversion/claims");
        VersionResolver.Result r = resolver.resolve("realm", request("u1"), settings(closed, FailurePolicy.OMIT_CLAIM));
        assertEquals(VersionResolver.Source.NONE, r.source());
    }

    @Test
    void rememberedVersionsAreScopedByRealm() throws Exception {
        URI uri = stub.uri("/tokenversion/claims");
        stub.answer(200, "{\"token_version\":9}");
        resolver.resolve("realm-a", request("u1"), settings(uri, FailurePolicy.OMIT_CLAIM));
        stub.answer(500, "");
        assertEquals(VersionResolver.Source.NONE,
                resolver.resolve("realm-b", request("u1"), settings(uri, FailurePolicy.OMIT_CLAIM)).source());
        assertRemembered(9, resolver.resolve("realm-a", request("u1"), settings(uri, FailurePolicy.OMIT_CLAIM)));
    }

    @Test
    void noEndpointConfigured() {
        VersionResolver.Result r = resolver.resolve("realm", request("u1"), settings(null, FailurePolicy.OMIT_CLAIM));
        assertEquals(VersionResolver.Source.NONE, r.source());
        assertThrows(VersionResolver.VersionUnavailableException.class,
                () -> resolver.resolve("realm", request("u1"), settings(null, FailurePolicy.FAIL)));
    }

    @Test
    void endpointForLogHidesUserInfoAndQuery() {
        assertEquals("http://127.0.0.1:8000/tokenversion/claims",
                VersionResolver.forLog(URI.create("http://user:pw@127.0.0.1:8000/tokenversion/claims?k=secret")));
    }

    private static void assertRemembered(long v, VersionResolver.Result r) {
        assertEquals(OptionalLong.of(v), r.version());
        assertEquals(VersionResolver.Source.REMEMBERED, r.source());
    }
}
