package dev.tokenversion.keycloak;

import org.jboss.logging.Logger;
import org.keycloak.http.HttpRequest;
import org.keycloak.jose.jws.JWSInput;
import org.keycloak.models.ClientModel;
import org.keycloak.models.ClientSessionContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.ProtocolMapperContainerModel;
import org.keycloak.models.ProtocolMapperModel;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.models.UserSessionModel;
import org.keycloak.protocol.ProtocolMapperConfigException;
import org.keycloak.protocol.oidc.OIDCLoginProtocol;
import org.keycloak.protocol.oidc.mappers.AbstractOIDCProtocolMapper;
import org.keycloak.protocol.oidc.mappers.OIDCAccessTokenMapper;
import org.keycloak.protocol.oidc.mappers.OIDCAttributeMapperHelper;
import org.keycloak.protocol.oidc.mappers.OIDCIDTokenMapper;
import org.keycloak.protocol.oidc.mappers.TokenIntrospectionTokenMapper;
import org.keycloak.protocol.oidc.mappers.UserInfoTokenMapper;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;
import org.keycloak.representations.AccessToken;
import org.keycloak.representations.IDToken;
import org.keycloak.services.ErrorResponseException;
import org.keycloak.services.Urls;
import org.keycloak.utils.JsonUtils;
import org.keycloak.vault.VaultStringSecret;

import jakarta.ws.rs.core.MultivaluedMap;
import jakarta.ws.rs.core.Response;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;

/**
 * "Token version" protocol mapper: asks the tokenversion provider for the user's current version at token issue
 * and puts it into the token (default claim {@code token_version}).
 */
public class TokenVersionProtocolMapper extends AbstractOIDCProtocolMapper
        implements OIDCAccessTokenMapper, OIDCIDTokenMapper, UserInfoTokenMapper, TokenIntrospectionTokenMapper {

    public static final String PROVIDER_ID = "tokenversion-mapper";
    public static final String DEFAULT_CLAIM_NAME = "token_version";


    private static final Logger LOG = Logger.getLogger(TokenVersionProtocolMapper.class);

    /** One per JVM: the mapper factory is a singleton, but be explicit about it. */
    static final VersionResolver RESOLVER = new VersionResolver(new VersionCache(VersionCache.DEFAULT_MAX_ENTRIES));

    /**
     * Cached mode: the maps and their feed followers, one per provider endpoint on this node. Not stopped in
     * {@link #close()}: a protocol mapper is its own factory, so that one method is both the factory's and the
     * provider's close, and Keycloak may call the latter at the end of a session. The followers are daemon
     * threads that stop after 15 idle minutes, and at JVM shutdown.
     */
    static final CachedResolver CACHED = new CachedResolver(new VersionCache(VersionCache.DEFAULT_MAX_ENTRIES),
            VersionMap.DEFAULT_MAX_ENTRIES);

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(CACHED::stopAll, "tokenversion-shutdown"));
    }

    private static final List<ProviderConfigProperty> CONFIG_PROPERTIES = buildConfig();

    private static List<ProviderConfigProperty> buildConfig() {
        List<ProviderConfigProperty> props = new ArrayList<>();
        OIDCAttributeMapperHelper.addTokenClaimNameConfig(props);
        props.get(props.size() - 1).setDefaultValue(DEFAULT_CLAIM_NAME);
        OIDCAttributeMapperHelper.addIncludeInTokensConfig(props, TokenVersionProtocolMapper.class);
        props.addAll(ProviderConfigurationBuilder.create()
                .property()
                    .name(MapperConfig.ENDPOINT_URL)
                    .label("Claims endpoint URL")
                    .helpText("Full URL of the tokenversion provider's claims endpoint, "
                            + "e.g. http://127.0.0.1:8000/tokenversion/claims")
                    .type(ProviderConfigProperty.STRING_TYPE)
                    .add()
                .property()
                    .name(MapperConfig.SECRET)
                    .label("Mapper secret")
                    .helpText("Sent as X-TokenVersion-Secret; one of the provider's TOKENVERSION_MAPPER_SECRETS. "
                            + "A vault reference such as ${vault.tokenversion_mapper} is resolved.")
                    .type(ProviderConfigProperty.PASSWORD)
                    .secret(true)
                    .add()
                .property()
                    .name(MapperConfig.CONNECT_TIMEOUT_MS)
                    .label("Connect timeout (ms)")
                    .helpText("TCP connect timeout for the claims call.")
                    .type(ProviderConfigProperty.STRING_TYPE)
                    .defaultValue(String.valueOf(MapperConfig.DEFAULT_CONNECT_TIMEOUT_MS))
                    .add()
                .property()
                    .name(MapperConfig.READ_TIMEOUT_MS)
                    .label("Read timeout (ms)")
                    .helpText("How long to wait for the provider's answer once connected.")
                    .type(ProviderConfigProperty.STRING_TYPE)
                    .defaultValue(String.valueOf(MapperConfig.DEFAULT_READ_TIMEOUT_MS))
                    .add()
                .property()
                    .name(MapperConfig.MODE)
                    .label("Mode")
                    .helpText("direct: one claims call per token request. cached: versions come from an in-memory "
                            + "map on each Keycloak node, kept current by the provider's feed; no call at token "
                            + "issue while the map is fresh (needs the feed secret).")
                    .type(ProviderConfigProperty.LIST_TYPE)
                    .options(MapperMode.OPTIONS)
                    .defaultValue(MapperMode.DIRECT.value())
                    .add()
                .property()
                    .name(MapperConfig.FEED_SECRET)
                    .label("Feed secret (cached mode)")
                    .helpText("Sent as X-TokenVersion-Secret to the provider's feed (feed/versions, feed/events, "
                            + "next to the claims URL); one of the provider's TOKENVERSION_FEED_SECRETS. "
                            + "A vault reference is resolved.")
                    .type(ProviderConfigProperty.PASSWORD)
                    .secret(true)
                    .add()
                .property()
                    .name(MapperConfig.MAX_STALENESS_MS)
                    .label("Max staleness (ms, cached mode)")
                    .helpText("The map answers alone while its proof of freshness is at most this old; beyond "
                            + "it the claims endpoint is asked. A bump older than this is in every new token.")
                    .type(ProviderConfigProperty.STRING_TYPE)
                    .defaultValue(String.valueOf(MapperConfig.DEFAULT_MAX_STALENESS_MS))
                    .add()
                .property()
                    .name(MapperConfig.FAILURE_POLICY)
                    .label("Failure policy")
                    .helpText("When the provider cannot be reached and no version is remembered for the user: "
                            + "omit_claim issues the token without the claim (APIs refuse it); "
                            + "fail makes the token request fail.")
                    .type(ProviderConfigProperty.LIST_TYPE)
                    .options(FailurePolicy.OPTIONS)
                    .defaultValue(FailurePolicy.OMIT_CLAIM.value())
                    .add()
                .build());
        return props;
    }

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public String getDisplayCategory() {
        return TOKEN_MAPPER_CATEGORY;
    }

    @Override
    public String getDisplayType() {
        return "Token version";
    }

    @Override
    public String getHelpText() {
        return "Adds the user's current token version from the tokenversion provider, so that APIs can refuse "
                + "tokens issued before a revocation.";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return CONFIG_PROPERTIES;
    }

    @Override
    public void validateConfig(KeycloakSession session, RealmModel realm, ProtocolMapperContainerModel client,
                               ProtocolMapperModel mapperModel) throws ProtocolMapperConfigException {
        Map<String, String> config = mapperModel.getConfig() == null ? Map.of() : mapperModel.getConfig();
        try {
            // do not resolve vault references here: the vault may be configured only on some nodes
            MapperConfig.parse(config, null);
        } catch (IllegalArgumentException e) {
            // Keycloak 26.7 needs a message key here (a null key ends in a NullPointerException and a 500) and
            // formats the message with MessageFormat: keep quotes and braces out of it.
            String message = e.getMessage().replaceAll("['{}]", "");
            throw new ProtocolMapperConfigException(message, "tokenversionInvalidMapperConfig");
        }
    }

    @Override
    protected void setClaim(IDToken token, ProtocolMapperModel mappingModel, UserSessionModel userSession,
                            KeycloakSession keycloakSession, ClientSessionContext clientSessionCtx) {
        OptionalLong version = versionFor(token, mappingModel, userSession, keycloakSession, clientSessionCtx);
        if (version.isPresent()) {
            putClaim(token, mappingModel, version.getAsLong());
        }
    }

    /**
     * Introspection must describe the token presented, not the user's current state: Keycloak rebuilds the
     * introspection answer from mappers, so copy this claim from the presented (already verified) token instead
     * of asking the provider. If it cannot be read, the claim is left out.
     */
    @Override
    public AccessToken transformIntrospectionToken(AccessToken token, ProtocolMapperModel mappingModel,
                                                   KeycloakSession session, UserSessionModel userSession,
                                                   ClientSessionContext clientSessionCtx) {
        if (!OIDCAttributeMapperHelper.includeInIntrospection(mappingModel)) {
            return token;
        }
        Object original = claimOfPresentedToken(session, claimName(mappingModel));
        if (original instanceof Number n) {
            putClaim(token, mappingModel, n.longValue());
        }
        return token;
    }

    private static Object claimOfPresentedToken(KeycloakSession session, String claimName) {
        try {
            HttpRequest request = session.getContext().getHttpRequest();
            if (request == null) {
                return null;
            }
            MultivaluedMap<String, String> form = request.getDecodedFormParameters();
            String presented = form == null ? null : form.getFirst("token");
            if (presented == null || presented.chars().filter(c -> c == '.').count() != 2) {
                return null; // not a compact JWS (absent, or an encrypted JWE)
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> claims = new JWSInput(presented).readJsonContent(Map.class);
            Object current = claims;
            for (String part : JsonUtils.splitClaimPath(claimName)) {
                if (!(current instanceof Map<?, ?> m)) {
                    return null;
                }
                current = m.get(part);
            }
            return current;
        } catch (Exception e) {
            LOG.debugf("tokenversion: cannot read claim from the introspected token: %s", e.toString());
            return null;
        }
    }

    private static String claimName(ProtocolMapperModel model) {
        String name = model.getConfig() == null ? null : model.getConfig().get(OIDCAttributeMapperHelper.TOKEN_CLAIM_NAME);
        return name == null || name.isBlank() ? DEFAULT_CLAIM_NAME : name.trim();
    }

    /** Puts the version under the configured claim name (nested names such as "a.b" work as in Keycloak). */
    static void putClaim(IDToken token, ProtocolMapperModel model, long version) {
        Object value = version <= Integer.MAX_VALUE ? (Object) Integer.valueOf((int) version) : Long.valueOf(version);
        // The value is already a JSON integer: an own copy of the config without jsonType.label, so that a
        // jsonType set by a provisioning script ("long", "String") cannot make Keycloak's converter throw.
        ProtocolMapperModel effective = new ProtocolMapperModel();
        effective.setName(model.getName());
        Map<String, String> config = new HashMap<>(model.getConfig() == null ? Map.of() : model.getConfig());
        config.put(OIDCAttributeMapperHelper.TOKEN_CLAIM_NAME, claimName(model));
        config.remove(OIDCAttributeMapperHelper.JSON_TYPE);
        config.remove("multivalued");
        effective.setConfig(config);
        OIDCAttributeMapperHelper.mapClaim(token, effective, value);
    }

    /**
     * Asks the provider at most once per Keycloak request and mapper: the access token, ID token and refresh
     * token of one token response carry the same value.
     */
    private OptionalLong versionFor(IDToken token, ProtocolMapperModel model, UserSessionModel userSession,
                                    KeycloakSession session, ClientSessionContext clientSessionCtx) {
        UserModel user = userSession == null ? null : userSession.getUser();
        if (user == null) {
            return OptionalLong.empty();
        }
        RealmModel realm = userSession.getRealm();
        String memoKey = "tokenversion:" + (model.getId() != null ? model.getId() : model.getName()) + ":" + user.getId();
        Object memo = session.getAttribute(memoKey);
        if (memo instanceof Long l) {
            return l < 0 ? OptionalLong.empty() : OptionalLong.of(l);
        }

        VersionResolver.Settings settings;
        try {
            settings = MapperConfig.parseOnce(model.getConfig(), raw -> resolveSecret(session, raw));
        } catch (IllegalArgumentException e) {
            LOG.warnf("tokenversion: mapper '%s' is misconfigured: %s", model.getName(), e.getMessage());
            settings = new VersionResolver.Settings(null, null, MapperConfig.DEFAULT_CONNECT_TIMEOUT_MS,
                    MapperConfig.DEFAULT_READ_TIMEOUT_MS,
                    safePolicy(model.getConfig() == null ? null : model.getConfig().get(MapperConfig.FAILURE_POLICY)));
        }

        ClientModel client = clientSessionCtx == null || clientSessionCtx.getClientSession() == null
                ? null : clientSessionCtx.getClientSession().getClient();
        ClaimsRequest request = new ClaimsRequest(user.getId(), issuer(token, session, realm, clientSessionCtx),
                user.getUsername(), user.getEmail(), client == null ? null : client.getClientId(), userSession.getId());

        VersionResolver.Result result;
        try {
            result = settings.mode() == MapperMode.CACHED
                    ? CACHED.resolve(request.issuer(), request, settings)
                    : RESOLVER.resolve(realm.getId(), request, settings);
        } catch (VersionResolver.VersionUnavailableException e) {
            throw new ErrorResponseException("temporarily_unavailable",
                    "The token version service is unavailable; try again later.", Response.Status.SERVICE_UNAVAILABLE);
        }
        session.setAttribute(memoKey, result.version().isPresent() ? result.version().getAsLong() : -1L);
        return result.version();
    }

    private static FailurePolicy safePolicy(String raw) {
        try {
            return FailurePolicy.parse(raw);
        } catch (IllegalArgumentException e) {
            return FailurePolicy.FAIL; // misconfigured: do not silently issue tokens without the claim
        }
    }

    /** The realm issuer exactly as in tokens' {@code iss}. */
    static String issuer(IDToken token, KeycloakSession session, RealmModel realm, ClientSessionContext ctx) {
        if (token != null && token.getIssuer() != null) {
            return token.getIssuer();
        }
        if (ctx != null && ctx.getClientSession() != null) {
            String note = ctx.getClientSession().getNote(OIDCLoginProtocol.ISSUER);
            if (note != null) {
                return note;
            }
        }
        return Urls.realmIssuer(session.getContext().getUri().getBaseUri(), realm.getName());
    }

    private static String resolveSecret(KeycloakSession session, String raw) {
        try (VaultStringSecret s = session.vault().getStringSecret(raw)) {
            return s.get().orElse(raw);
        } catch (RuntimeException e) {
            return raw;
        }
    }
}
