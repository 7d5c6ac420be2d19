metadata description = 'The model-health Azure Monitor workbook over the telemetry the app sends to Application Insights (infra/monitoring/model-health.workbook.json).'

@description('Display name of the workbook in the portal.')
param displayName string = 'Model health (MLOps automation)'

@description('Azure region (the region of Application Insights).')
param location string

@description('Tags applied to the workbook.')
param tags object = {}

@description('Resource id of the Application Insights component the queries run against.')
param applicationInsightsId string

// The queries live in a JSON file of their own so tests/infra can check every metric,
// dimension and event name they use against what adapters/telemetry.py emits.
var content = replace(
  loadTextContent('../monitoring/model-health.workbook.json'),
  '__APP_INSIGHTS_ID__',
  applicationInsightsId
)

resource workbook 'Microsoft.Insights/workbooks@2022-04-01' = {
  // A workbook's name must be a GUID; this one is stable per resource group and component.
  name: guid(resourceGroup().id, applicationInsightsId, 'model-health')
  location: location
  tags: union(tags, { 'hidden-title': displayName })
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: content
    version: 'Notebook/1.0'
  }
}

@description('Resource id of the workbook.')
output id string = workbook.id

@description('Name (GUID) of the workbook.')
output name string = workbook.name
