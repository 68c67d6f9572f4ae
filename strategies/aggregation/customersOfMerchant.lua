--[[
customersOfMerchant: an aggregation-style path, merchant -> transactions -> cards ->
accounts -> customers, written by hand. Bound in mapTable.json as
  pr_merchants.changes.sv_customer = "__fromFile__[customersOfMerchant]"
A merchant changed (renamed): every customer who paid there sees its name in their
transaction list, so each must be rebuilt.

Each hop is ONE query for all the documents of the hop before ($in over their
keys), as a $lookup stage would be, not one query per document; the keys are
de-duplicated first, and the customers at the end. Every lookup skips soft-deleted
records (__STATE__ = "PUBLIC"). A low-code path [pr_merchants, pr_transactions,
pr_cards, pr_accounts, pr_customers] in projectionChangesSchema.json walks the same
hops; write it by hand when a hop needs what low code cannot say (a computed key,
a sort and limit, a condition on the data found so far).
]]
local function distinct(docs, field)
  local seen, out = {}, array{}
  for _, d in ipairs(docs) do
    local v = d[field]
    if v ~= nil and v ~= null and not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  table.sort(out)
  return out
end

-- The documents of coll whose field is one of values (none when values is empty).
local function lookup(db, coll, field, values, wanted)
  if #values == 0 then return {} end
  return db:find(coll, { [field] = { ["$in"] = values }, __STATE__ = "PUBLIC" },
    { projection = { [wanted] = 1 } })
end

return function(document, db, log)
  local merchant = document.ID_MERCHANT
  if merchant == nil or merchant == null then return {} end
  local transactions = db:find("pr_transactions", { ID_MERCHANT = merchant, __STATE__ = "PUBLIC" },
    { projection = { ID_CARD = 1 } })
  local cards = lookup(db, "pr_cards", "ID_CARD", distinct(transactions, "ID_CARD"), "ID_ACCOUNT")
  local accounts = lookup(db, "pr_accounts", "ID_ACCOUNT", distinct(cards, "ID_ACCOUNT"), "ID_CUSTOMER")
  local out = {}
  for _, customer in ipairs(distinct(accounts, "ID_CUSTOMER")) do
    out[#out + 1] = { customerId = customer }
  end
  log.debug("customers of a merchant", { ID_MERCHANT = merchant, customers = #out })
  return out
end
