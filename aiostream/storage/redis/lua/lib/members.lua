-- Timeline members are ids in {{MEMBER_BYTES}} bytes, big-endian (byte order is numeric
-- order); a member of {{ID_WIDTH}} hex digits was written before that layout, and reads as
-- its id until `python -m aiostream.storage.redis migrate` rewrites it.
local MEMBER_HEX = string.rep('%02x', {{MEMBER_BYTES}})
-- member_hex(member): the id of a member in {{ID_WIDTH}} hex digits.
local function member_hex(member)
  if #member == {{ID_WIDTH}} then return member end
  return string.format(MEMBER_HEX, string.byte(member, 1, {{MEMBER_BYTES}}))
end
-- hex_member(hex): the member of an id given in {{ID_WIDTH}} hex digits.
local function hex_member(hex)
  local bytes = {}
  for i = 1, {{ID_WIDTH}}, 2 do
    bytes[#bytes + 1] = tonumber(string.sub(hex, i, i + 1), 16)
  end
  return string.char(unpack(bytes))
end
-- member_bound(bound): a ZRANGEBYLEX bound over hex ids ('-', '+', or '[' / '(' and
-- {{ID_WIDTH}} hex digits) as a bound over members.
local function member_bound(bound)
  if #bound == 1 then return bound end
  return string.sub(bound, 1, 1) .. hex_member(string.sub(bound, 2))
end
