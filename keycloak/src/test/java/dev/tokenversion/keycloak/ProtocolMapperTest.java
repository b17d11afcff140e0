package dev.tokenversion.keycloak;

import org.junit.jupiter.api.Test;
import org.keycloak.models.ProtocolMapperModel;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.representations.AccessToken;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;

class ProtocolMapperTest {

    @Test
    void configPropertiesCarryTheStandardSwitchesAndOwnKeys() {
        TokenVersionProtocolMapper m = new TokenVersionProtocolMapper();
        assertEquals("tokenversion-mapper", m.getId());
        assertEquals("Token version", m.getDisplayType());
        Map<String, ProviderConfigProperty> props = m.getConfigProperties().stream()
                .collect(Collectors.toMap(ProviderConfigProperty::getName, p -> p));
        for (String k : List.of("claim.name", "access.token.claim", "id.token.claim", "userinfo.token.claim",
                "introspection.token.claim", "lightweight.claim", "tokenversion.endpoint.url", "tokenversion.secret",
                "tokenversion.connect.timeout.ms", "tokenversion.read.timeout.ms", "tokenversion.failure.policy")) {
            assertTrue(props.containsKey(k), k);
        }
        assertEquals("token_version", props.get("claim.name").getDefaultValue());
        assertEquals(ProviderConfigProperty.PASSWORD, props.get("tokenversion.secret").getType());
        assertEquals(ProviderConfigProperty.LIST_TYPE, props.get("tokenversion.failure.policy").getType());
        assertEquals(List.of("omit_claim", "fail"), props.get("tokenversion.failure.policy").getOptions());
        assertEquals("omit_claim", props.get("tokenversion.failure.policy").getDefaultValue());
        assertEquals("300", props.get("tokenversion.connect.timeout.ms").getDefaultValue());
        assertEquals("500", props.get("tokenversion.read.timeout.ms").getDefaultValue());
    }

    private static ProtocolMapperModel model(Map<String, String> config) {
        ProtocolMapperModel m = new ProtocolMapperModel();
        m.setName("token version");
        m.setConfig(new HashMap<>(config));
        return m;
    }

    @Test
    void putsAnIntegerUnderTheDefaultClaimName() {
        AccessToken t = new AccessToken();
        TokenVersionProtocolMapper.putClaim(t, model(Map.of()), 3);
        assertEquals(3, t.getOtherClaims().get("token_version"));
        assertInstanceOf(Integer.class, t.getOtherClaims().get("token_version"));
        assertFalse(t.getOtherClaims().containsKey(null));
    }

    @Test
    void honoursClaimNameNestingAndIgnoresJsonType() {
        AccessToken t = new AccessToken();
        TokenVersionProtocolMapper.putClaim(t, model(Map.of("claim.name", "tv.version", "jsonType.label", "long")), 5);
        @SuppressWarnings("unchecked")
        Map<String, Object> nested = (Map<String, Object>) t.getOtherClaims().get("tv");
        assertEquals(5, nested.get("version"));

        AccessToken big = new AccessToken();
        TokenVersionProtocolMapper.putClaim(big, model(Map.of("claim.name", "v", "jsonType.label", "String")),
                5_000_000_000L);
        assertEquals(5_000_000_000L, big.getOtherClaims().get("v"));
    }
}
