-- key_base(key): the part of a declared key up to its hash tag ('cm:{m:v}' of 'cm:{m:v}:offsets'), a
-- prelude of the scripts that name keys of their own: every key such a script builds starts with it,
-- so it is in the declared key's cluster slot (never built from ARGV, which a client does not route by).
local function key_base(key)
  return string.match(key, '^[^{]*{[^}]*}')
end
