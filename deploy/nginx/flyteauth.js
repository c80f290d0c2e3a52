// nginx JavaScript (njs) helper of flyteauth-http.conf: the sign-in URL a browser is redirected to when the
// ingress finds no valid session.
//
// The original URL travels as the redirect_url query parameter and so must be percent-encoded, which nginx's
// own configuration language cannot do: an unencoded "&" or "%" in the page's query string would cut or
// change the destination. flyteauth accepts the destination only when its scheme, host and port are those of
// an `auth.authorizedUris` entry, so a client-chosen Host header cannot turn this into an open redirect.

function signInUrl(r) {
    var host = r.headersIn.host;
    if (!host) {
        // HTTP/1.0 without Host: the name and port this server block answers on.
        host = r.variables.server_name + ':' + r.variables.server_port;
    }
    var target = r.variables.scheme + '://' + host + r.variables.request_uri;
    return '/login?redirect_url=' + encodeURIComponent(target);
}

export default { signInUrl };
