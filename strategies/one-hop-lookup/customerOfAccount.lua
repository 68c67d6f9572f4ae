--[[
customerOfAccount: one-hop lookup. Bound in mapTable.json as
  pr_accounts.changes.sv_customer = "__fromFile__[customerOfAccount]"
An account changed (opened, closed, its IBAN changed): the customer who holds it
must see it in their single view. The single view is keyed by the customer's public
code, which the account does not carry: one lookup of the customer gives it.

Returns {} (no single view) when the account names no customer or the customer is
unknown or soft-deleted: a lookup must filter on __STATE__ = "PUBLIC", since
soft-deleted records stay in the collection.
]]
return function(document, db, log)
  local id = document.ID_CUSTOMER
  if id == nil or id == null then return {} end
  local customer = db:findOne("pr_customers", { ID_CUSTOMER = id, __STATE__ = "PUBLIC" })
  if customer == nil or customer.CUSTOMER_CODE == nil or customer.CUSTOMER_CODE == null then
    log.debug("account of an unknown customer", { ID_ACCOUNT = document.ID_ACCOUNT })
    return {}
  end
  return { { customerCode = customer.CUSTOMER_CODE } }
end
