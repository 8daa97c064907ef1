"""SKAdNetwork: postbacks as received (postback_input), conversion schemas and decoding (decode), and the
decoded postbacks forwarded to ad networks (macros). docs/skan.md has the facts."""
