//! Request signing for government data-exchange gateways: a string built from a template
//! (`{app_key}` `{timestamp}` `{nonce}` `{params}` `{body}` `{secret}`) digested with MD5,
//! HMAC-SHA256 (key = secret) or SM3, written as hex.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use super::config::SignAlgorithm;

/// The inputs of one signature.
pub struct SignInput<'a> {
    pub app_key: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
    /// All query parameters (decoded values) except the sign parameter itself.
    pub params: &'a [(String, String)],
    /// The request body exactly as sent ("" for none).
    pub body: &'a str,
    pub secret: &'a str,
}

/// `k=v` pairs sorted by name (then value), joined by `&`, values not URL-encoded.
pub fn canonical_params(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Fills the template. Placeholders are replaced in one pass, so a value that happens to
/// contain `{secret}` is not expanded again.
pub fn render_template(template: &str, input: &SignInput<'_>) -> String {
    let params = canonical_params(input.params);
    let mut out = String::with_capacity(template.len() + params.len() + input.body.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let replaced = [
            ("{app_key}", input.app_key),
            ("{timestamp}", input.timestamp),
            ("{nonce}", input.nonce),
            ("{params}", params.as_str()),
            ("{body}", input.body),
            ("{secret}", input.secret),
        ]
        .into_iter()
        .find(|(p, _)| after.starts_with(p));
        match replaced {
            Some((p, v)) => {
                out.push_str(v);
                rest = &after[p.len()..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Digests the rendered template and writes it as hex.
pub fn sign(
    algorithm: SignAlgorithm,
    template: &str,
    input: &SignInput<'_>,
    uppercase: bool,
) -> String {
    let message = render_template(template, input);
    let bytes: Vec<u8> = match algorithm {
        SignAlgorithm::Md5 => Md5::digest(message.as_bytes()).to_vec(),
        SignAlgorithm::Sm3 => sm3::Sm3::digest(message.as_bytes()).to_vec(),
        SignAlgorithm::HmacSha256 => {
            // HMAC accepts keys of any length; new_from_slice cannot fail for HMAC.
            match Hmac::<Sha256>::new_from_slice(input.secret.as_bytes()) {
                Ok(mut mac) => {
                    mac.update(message.as_bytes());
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
    };
    let hex = hex::encode(bytes);
    if uppercase {
        hex.to_ascii_uppercase()
    } else {
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Expected values computed independently with Python's hashlib/hmac.

    #[test]
    fn md5_onecard_formula_known_signature() {
        let params = p(&[
            ("page", "1"),
            ("rows", "500"),
            ("appkey", "ykt-demo"),
            ("timestamp", "1700000000"),
            ("nonce", "abc123"),
        ]);
        let input = SignInput {
            app_key: "ykt-demo",
            timestamp: "1700000000",
            nonce: "abc123",
            params: &params,
            body: "",
            secret: "ykt-demo-secret",
        };
        assert_eq!(
            sign(SignAlgorithm::Md5, "{params}&key={secret}", &input, true),
            "E3958ECC20537930AC4862C65D6794A6"
        );
        assert_eq!(
            sign(SignAlgorithm::Md5, "{params}&key={secret}", &input, false),
            "e3958ecc20537930ac4862c65d6794a6"
        );
    }

    #[test]
    fn md5_values_not_url_encoded_and_utf8_secret() {
        let params = p(&[("page", "1"), ("gxsj_start", "2024-01-01 00:00:00")]);
        let input = SignInput {
            app_key: "",
            timestamp: "",
            nonce: "",
            params: &params,
            body: "",
            secret: "密钥",
        };
        assert_eq!(
            sign(SignAlgorithm::Md5, "{params}&key={secret}", &input, true),
            "3A300E12E282F06E0F8BEB632776366F"
        );
    }

    #[test]
    fn hmac_sha256_known_signature() {
        let params = p(&[("rows", "500"), ("page", "1")]);
        let input = SignInput {
            app_key: "ykt-demo",
            timestamp: "1700000000",
            nonce: "abc123",
            params: &params,
            body: "",
            secret: "s3cret",
        };
        assert_eq!(
            sign(
                SignAlgorithm::HmacSha256,
                "{app_key}{timestamp}{nonce}{params}",
                &input,
                true
            ),
            "FACF644DA5F19172A857E8EB4D153F9B9EBEC543A9472EB219F5B3CF716C068E"
        );
    }

    #[test]
    fn sm3_known_signatures() {
        let input = SignInput {
            app_key: "",
            timestamp: "",
            nonce: "",
            params: &[],
            body: "abc",
            secret: "",
        };
        // GB/T 32905-2016 example A.1.
        assert_eq!(
            sign(SignAlgorithm::Sm3, "{body}", &input, false),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        let params = p(&[("page", "1"), ("appkey", "ykt-demo")]);
        let input = SignInput {
            params: &params,
            secret: "s3cret",
            ..input
        };
        assert_eq!(
            sign(SignAlgorithm::Sm3, "{params}&secret={secret}", &input, true),
            "46FB5313A17531F5341E79619D54B181E1EF7E62B5EF01B0992BE5CBA01BA9DA"
        );
    }

    #[test]
    fn template_is_single_pass_and_keeps_unknown_braces() {
        let params = p(&[("q", "{secret}")]);
        let input = SignInput {
            app_key: "a",
            timestamp: "t",
            nonce: "n",
            params: &params,
            body: "{\"x\":1}",
            secret: "S",
        };
        assert_eq!(
            render_template("{params}|{body}|{other}|{secret}", &input),
            "q={secret}|{\"x\":1}|{other}|S"
        );
    }
}
