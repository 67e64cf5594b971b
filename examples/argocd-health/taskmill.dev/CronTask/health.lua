-- Argo CD health of a Taskmill CronTask: Degraded while its schedule or time
-- zone cannot be used, Suspended while spec.suspend is set, else Healthy.
local hs = {}
local conditions = (obj.status and obj.status.conditions) or {}
for _, condition in ipairs(conditions) do
  if condition.type == "ScheduleValid" and condition.status == "False" then
    hs.status = "Degraded"
    hs.message = condition.message or "the schedule cannot be used"
    return hs
  end
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "suspended"
  return hs
end
hs.status = "Healthy"
if obj.status ~= nil and obj.status.nextScheduleTime ~= nil then
  hs.message = "next at " .. obj.status.nextScheduleTime
else
  hs.message = "scheduled"
end
return hs
