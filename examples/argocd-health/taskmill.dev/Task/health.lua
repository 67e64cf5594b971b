-- Argo CD health of a Taskmill Task, from its phase (the same verdicts kstatus
-- gives through the Task's Reconciling and Stalled conditions).
local hs = {}
local status = obj.status or {}
local phase = status.phase or "Pending"
local message = status.message
if message == nil or message == "" then
  message = phase
else
  message = phase .. ": " .. message
end
hs.message = message
if phase == "Succeeded" or phase == "Cancelled" then
  -- Cancelled ended as someone asked: neither progress nor a failure.
  hs.status = "Healthy"
elseif phase == "Dead" then
  hs.status = "Degraded"
else
  -- Pending, Waiting, Running.
  hs.status = "Progressing"
end
return hs
