--[[
customersOfOrderDish: hand-written strategy of the food-delivery example, bound in
mapTable.json as pr_orders_dishes.changes.sv_customers. It runs only with
USE_AUTOMATIC_STRATEGIES=false (manual mode); in low-code mode the same answer comes
from the sub-path [pr_orders_dishes, pr_orders, pr_registry] of
projectionChangesSchema.json.

A line of an order changed (a dish added, a quantity or a substitution changed): the
customer who placed the order must see it in their single view.

Contract: function(document, db, log) -> {identifier, ...}, with read-only
db:find(collection, filter, options) / db:findOne(collection, filter, options).
`document` is the pr_orders_dishes record as stored after the write (a soft-deleted
line still names its order).
]]
return function(document, db, log)
  if document.ID_ORDER == nil or document.ID_ORDER == null then return {} end
  local order = db:findOne("pr_orders", { ID_ORDER = document.ID_ORDER, __STATE__ = "PUBLIC" })
  if order == nil or order.ID_USER_ORDER == nil or order.ID_USER_ORDER == null then
    log.debug("order line of an unknown order", { ID_ORDER_DISH = document.ID_ORDER_DISH })
    return {}
  end
  local customer = db:findOne("pr_registry", { ID_USER = order.ID_USER_ORDER, __STATE__ = "PUBLIC" })
  if customer == nil then return {} end
  return { { ID_USER = customer.ID_USER } }
end
