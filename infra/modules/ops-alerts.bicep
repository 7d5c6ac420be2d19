metadata description = 'Alert rules that page Ops by email when the app itself is unhealthy, through an action group of their own (independent of the app\'s alert email): function failures, no conditioning, the alert outbox backing up, a stale champion.'

@description('Azure region of Application Insights (log search alert rules live beside it).')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Resource id of the Application Insights component the rules watch.')
param applicationInsightsId string

@description('Prefix of the rule and action group names.')
param namePrefix string

@description('Who Azure Monitor pages: comma-separated email addresses.')
param opsEmails string

@description('Failed function invocations in 15 minutes above which Ops is paged.')
@minValue(1)
param functionFailureThreshold int = 5

@description('Page Ops when no raw file was conditioned for this many hours.')
@minValue(1)
param conditioningSilenceHours int = 26

@description('Whether the no-conditioning rule is on (off while no drops are expected).')
param conditioningAlertEnabled bool = true

@description('Alert emails waiting in the outbox above which Ops is paged.')
@minValue(1)
param alertOutboxMaxPending int = 10

@description('Minutes the oldest waiting alert email may wait before Ops is paged.')
@minValue(5)
param alertOutboxMaxAgeMinutes int = 60

@description('Age in days above which a champion model pages Ops (the case study\'s 60 days).')
@minValue(1)
param championMaxAgeDays int = 60

var receivers = [for (address, i) in split(opsEmails, ','): {
  name: 'ops-${i}'
  emailAddress: trim(address)
  useCommonAlertSchema: true
}]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-ops'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mlops-ops'
    enabled: true
    emailReceivers: receivers
  }
}

// Every function invocation is a request in Application Insights; a failed one is a
// failed request, whatever its trigger.
resource functionFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-function-failures'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than ${functionFailureThreshold} failed function invocations in 15 minutes. See docs/operator-guide.md, "Alert rules".'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'failed-invocations'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: functionFailureThreshold
          timeAggregation: 'Count'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// Log search rules: each query returns rows only when the condition holds (the queries are in
// infra/monitoring/*.kql, checked against adapters/telemetry.py by tests/infra).
var logRules = [
  {
    name: 'no-conditioning'
    displayName: 'No data conditioned for ${conditioningSilenceHours} hours'
    description: 'No raw file was conditioned into usable data for ${conditioningSilenceHours} hours, or the app stopped reporting. See docs/operator-guide.md, "Alert rules".'
    severity: 2
    enabled: conditioningAlertEnabled
    frequency: 'PT1H'
    window: 'PT2H'
    query: replace(loadTextContent('../monitoring/no-conditioning.kql'), '{HOURS}', string(conditioningSilenceHours))
  }
  {
    name: 'alert-outbox'
    displayName: 'Alert outbox backing up'
    description: 'More than ${alertOutboxMaxPending} alert emails wait in the outbox, or one waited over ${alertOutboxMaxAgeMinutes} minutes: the app\'s own alert email is not getting through. See docs/operator-guide.md, "Alert rules".'
    severity: 1
    enabled: true
    frequency: 'PT15M'
    window: 'PT30M'
    query: replace(replace(loadTextContent('../monitoring/alert-outbox.kql'), '{MAX_PENDING}', string(alertOutboxMaxPending)), '{MAX_AGE_MINUTES}', string(alertOutboxMaxAgeMinutes))
  }
  {
    name: 'stale-champion'
    displayName: 'Champion older than ${championMaxAgeDays} days'
    description: 'A segment\'s champion was trained more than ${championMaxAgeDays} days ago and retraining has not replaced it. See docs/operator-guide.md, "Alert rules".'
    severity: 3
    enabled: true
    frequency: 'PT1H'
    window: 'PT2H'
    query: replace(loadTextContent('../monitoring/stale-champion.kql'), '{MAX_AGE_DAYS}', string(championMaxAgeDays))
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = [for rule in logRules: {
  name: '${namePrefix}-${rule.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: rule.enabled
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    scopes: [
      applicationInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    // Stateful: Ops is paged once when a rule fires and told when it resolves.
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

@description('Resource id of the Ops action group.')
output actionGroupId string = actionGroup.id

@description('Name of the function failures rule.')
output functionFailuresRuleName string = functionFailures.name

@description('Names of the log search alert rules.')
output logRuleNames array = [for rule in logRules: '${namePrefix}-${rule.name}']
