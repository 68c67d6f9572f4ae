--[[
castPhoneToE164: custom cast of the food-delivery example (pr_registry.PHONE,
pr_restaurants.PHONE). The source systems type phone numbers by hand: "02 3456 7890",
"+39 333 123 4567", "0039-011-555-0199", "(011) 555 0199". The projection keeps them
in E.164 form, "+390234567890", so the single views can be searched and deduplicated.
Numbers without an international prefix are Italian (+39).

Contract: function(value, fieldName, log) -> value; nil means "undefined" (stored as
null), like a built-in cast given an invalid value.
]]
return function(value, fieldName, log)
  if value == nil or value == null then return value end
  if math.type(value) == "integer" then value = tostring(value) end
  if type(value) ~= "string" then
    log.debug(fieldName .. " is invalid, will be casted to undefined")
    return nil
  end
  local digits = value:gsub("[%s%-%./()]", "")
  if digits:sub(1, 2) == "00" then
    digits = "+" .. digits:sub(3)
  elseif digits:sub(1, 1) ~= "+" then
    digits = "+39" .. digits
  end
  -- E.164: a country code and at most 15 digits in all
  if not digits:match("^%+[1-9]%d+$") or #digits < 8 or #digits > 16 then
    log.debug(fieldName .. " is invalid, will be casted to undefined")
    return nil
  end
  return digits
end
