-- newer(a, b): whether hex id a is above hex id b (both {{ID_WIDTH}} digits). String
-- comparison follows the server's locale: it is used only if it orders the hex digits
-- as numbers, else each half is compared by value (each fits a double exactly).
local HEX_DIGITS = '0123456789abcdef'
local PLAIN_ORDER = true
for i = 1, 15 do
  if not (string.sub(HEX_DIGITS, i, i) < string.sub(HEX_DIGITS, i + 1, i + 1)) then
    PLAIN_ORDER = false
  end
end
local function newer(a, b)
  if PLAIN_ORDER then return a > b end
  local w = {{TIME_WIDTH}}
  local ta, tb = string.sub(a, 1, w), string.sub(b, 1, w)
  if ta ~= tb then return tonumber(ta, 16) > tonumber(tb, 16) end
  return tonumber(string.sub(a, w + 1), 16) > tonumber(string.sub(b, w + 1), 16)
end
