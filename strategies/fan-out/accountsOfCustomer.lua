--[[
accountsOfCustomer: fan-out over a oneToMany relation. Bound in mapTable.json as
  pr_customers.changes.sv_account = "__fromFile__[accountsOfCustomer]"
A customer changed (renamed, moved house): every account single view shows the
holder, so each of the customer's accounts must be rebuilt. One db:find returns
them all; each gives one identifier. rtu de-duplicates identifiers per single view
and batch, so a strategy need not.

A projection keyed by one field is enough to read here: the projection option
asks MongoDB for that field only (a customer may have many accounts).
]]
return function(document, db, log)
  local id = document.ID_CUSTOMER
  if id == nil or id == null then return {} end
  local accounts = db:find("pr_accounts", { ID_CUSTOMER = id, __STATE__ = "PUBLIC" },
    { projection = { ID_ACCOUNT = 1 } })
  local out = {}
  for _, account in ipairs(accounts) do
    out[#out + 1] = { accountId = account.ID_ACCOUNT }
  end
  return out
end
